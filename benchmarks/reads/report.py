"""``reads.md``: the verdict first, then the figures that explain it, from one run."""

from __future__ import annotations

from typing import Any

NAMES = {
    "service": "service: cached hit, rate limits ON (production configuration)",
    "bare": "bare Flask `def` view, same bytes",
    "stock": "stock: flask-caching `@cache.cached` + Flask-Limiter (Redis)",
    "bare_redis": "control: the bare view + one Redis GET of the same bytes (no limiter)",
}


def _spread(s: dict[str, float], fmt: str) -> str:
    return f"{s['median']:{fmt}} ({s['min']:{fmt}}-{s['max']:{fmt}})"


def markdown(result: dict[str, Any], targets: dict[str, float]) -> str:
    summary, ratios, settings = result["summary"], result["ratios"], result["settings"]
    gunicorn = settings["gunicorn"]
    lines = [
        "# Cached reads: the production configuration beside its peers",
        "",
        f"`python -m benchmarks.reads`{' --quick (smoke run)' if settings['quick'] else ''}, "
        f"commit `{settings['commit']}`, {settings['when']}. {result['page']}; "
        f"{settings['rounds']} interleaved rounds of {settings['seconds_per_run']} s per app, "
        f"`{settings['load_generator']}`; every app under the service's `gunicorn.conf.py` "
        f"as read at run time ({', '.join(f'{k}={v}' for k, v in gunicorn.items())}), "
        f"`WEB_CONCURRENCY={settings['web_concurrency']}`; limited apps have "
        f"`RATELIMIT_DEFAULT={settings['ratelimit_default']}` (never reached).",
        "",
        "## Verdict",
        "",
        "| target | ratio of medians | |",
        "|---|---|---|",
    ]
    for key, target in targets.items():
        value = ratios[key]
        verdict = "met" if value >= target else "**missed**"
        label = key.replace("_vs_", " vs ")
        lines.append(f"| {label} >= {target:.1f}x | {value:.2f}x | {verdict} |")
    lines += [
        f"| (stock vs bare, for reference) | {ratios['stock_vs_bare']:.2f}x | |",
        f"| (control, bare + one Redis GET, vs bare) | {ratios['bare_redis_vs_bare']:.2f}x | |",
        f"| (service vs that control) | {ratios['service_vs_bare_redis']:.2f}x | |",
        "",
        "Checks: "
        + ("passed" if result["checks_passed"] else "**FAILED**")
        + " (no non-2xx/3xx or socket error in any measured run, no stale read).",
        "",
        "## Figures (median, min-max over rounds)",
        "",
        "| app | req/s | p99 ms | web CPU us/req | Redis CPU us/req | Redis commands/req "
        "| non-2xx |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        lines.append(
            f"| {NAMES[name]} | {_spread(s['rps'], ',.0f')} | {_spread(s['p99_ms'], '.2f')} "
            f"| {_spread(s['web_cpu_us'], '.0f')} | {_spread(s['redis_cpu_us'], '.1f')} "
            f"| {s['redis_commands']['median']:.2f} | {s['non_2xx']} |"
        )
    web = {name: s["web_cpu_us"]["median"] for name, s in summary.items()}
    lines += [
        "",
        "Web CPU is the gunicorn master and workers' user + system time over the run divided "
        "by the requests served (gunicorn's HTTP parsing and access log included: the same "
        "for every app); Redis CPU and commands come from redis-server's `INFO` over the "
        "same run (`total_commands_processed`: a Lua script counts as itself plus each "
        "command it calls, so the service's one round trip shows as 6 and the stock "
        "peer's two, limiter script and cache GET, as 3). With both cores shared by wrk, the web "
        "workers and redis-server, req/s follows the CPU each request costs: web CPU per "
        f"request, service / bare = {web['service'] / web['bare']:.2f}, "
        f"service / stock = {web['service'] / web['stock']:.2f}.",
        "",
        "What limits the hit against the bare view is the Redis round trip itself, not the "
        "code around it: the control, the bare view plus one plain Redis `GET` of the same "
        f"bytes and no rate limit, runs at {ratios['bare_redis_vs_bare']:.2f}x the bare view, "
        f"and the service's hit (rate limit counted in the same round trip) at "
        f"{ratios['service_vs_bare_redis']:.2f}x that control (web CPU per request "
        f"{web['service']:.0f} vs {web['bare_redis']:.0f} us). Any cache shared by processes "
        "pays that round trip; only a copy inside each process could skip it, and its "
        "invalidations would arrive asynchronously (a stale read after a write).",
        "",
        "## Reads while writing",
        "",
    ]
    rw = result["read_while_writing"]
    lines += [
        f"{rw['readers']} keep-alive readers for {rw['seconds']} s while an item on the page "
        f"is written every {rw['write_every_s'] * 1000:.0f} ms: {rw['reads']} reads "
        f"({rw['reads_per_s']}/s), hit ratio {rw['hit_ratio']:.2%}, {rw['writes']} writes, "
        f"**{rw['stale']} stale**, {rw['read_errors']} read errors, "
        f"{rw['write_errors']} write errors.",
        "",
        "## Machine",
        "",
        f"{result['machine']['nproc']} cores, {result['machine']['platform']}, Python "
        f"{result['machine']['python']}; load average before "
        f"{result['machine']['load_average_before']}, after "
        f"{result['machine']['load_average_after']}. Load generator, web workers and "
        "redis-server share these cores: absolute figures move with other load on the "
        "machine, the ratios come from interleaved rounds of the same run.",
        "",
    ]
    return "\n".join(lines)
