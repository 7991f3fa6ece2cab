"""Stage 1, harvest (`equigen fetch`): MusicBrainz search, Cover Art Archive downloads into the catalog, in rounds
planned until every genre can be balanced; `fetch --manifest` rebuilds a published dataset's items."""
