"""Stage 2, curate: the `equigen dedup` and `equigen balance` verbs over the catalog (their pure rules are
core's dedup_rules and balance_rules, which harvest's planning shares)."""
