"""nestguard's policy package: who is who, and what each one may resolve. Imports nothing
of ours but itself; only the store package has SQL.

- model.py      value types (Profile, Policy, Verdict, Match, ...), contracts
- store/        Store: the SQLite database (WAL, 0600, migrations, revision), one
                module per seam (see its __init__)
- decide.py     decide(profile, qname, now, index, *, qtype=1) -> Verdict (pure; precedence
                in its docstring)
- schedule.py   active_windows(profile, now) -> list[Schedule]
- safesearch.py safe_search_target(qname, *, search, youtube) -> str | None
- services.py   load_services() -> {slug: Service}; service_domains() -> {domain: slugs};
                activity_service(qname) -> slug | None (names that mark real use)
- budgets.py    daily time budgets: check_budget, standings, with_budgets, Meter (counting)
- reload.py     open_policy / build_policy / reload_loop / fallback_policy, ReloadStatus
- leases.py     parse_leases / read_leases / apply_leases / leases_loop (dnsmasq leases)
- live.py       Live[T]
"""
