"""EquiGen: genre-labelled album-cover datasets from MusicBrainz and the Cover Art Archive."""

__version__ = "0.1.0"
