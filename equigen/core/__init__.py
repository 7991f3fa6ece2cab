"""What every stage shares: records and contracts (records, manifest, mbids, defaults, errors), pure decisions used
by more than one stage (taxonomy, images, dedup_rules, balance_rules, search_analysis) and the adapters to disk
(catalog, storage, parquet, lock, config). Core never imports a stage."""
