"""Stage 3, publish: the `equigen split` verb writes dataset/ (shards, manifest, card, Croissant, checksums);
`equigen verify` audits one independently."""
