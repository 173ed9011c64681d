"""Counters for GET /metrics, rendered as Prometheus text (exposition format 0.0.4)."""

from __future__ import annotations

from collections import Counter


def _rate(part: int, whole: int) -> float:
    """part / whole rounded to 4 places (0.0 before any lookup)."""
    return round(part / whole, 4) if whole else 0.0


class Metrics:
    """Request counts by route and status, plus cache hits; model figures come from the backend."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, int]] = Counter()
        self.cache_hits = 0

    def count_request(self, route: str, status: int) -> None:
        """Count one answered request."""
        self.requests[(route, status)] += 1

    def render(self, stats: dict[str, int], *, ready: bool, cache_size: int) -> str:
        """The exposition text."""
        lines = ["# HELP chatconform_requests_total HTTP requests answered, by route and status.",
                 "# TYPE chatconform_requests_total counter"]
        for (route, status), count in sorted(self.requests.items()):
            route_label = route.replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'chatconform_requests_total{{route="{route_label}",status="{status}"}} {count}')
        gauges = {
            "chatconform_model_ready": ("Whether the model serves requests (1) or is loading (0).", int(ready)),
            "chatconform_running_requests": ("Generations in the running batch.", stats.get("running", 0)),
            "chatconform_waiting_requests": ("Generations waiting for a batch slot.", stats.get("waiting", 0)),
            "chatconform_cache_entries": ("Responses held by the x-use-cache cache.", cache_size),
            "chatconform_prefix_cache_hit_rate": ("Share of prefills that reused stored prompt keys/values.",
                                                  _rate(stats.get("prefix_hits", 0), stats.get("prefix_lookups", 0))),
            "chatconform_prefix_cache_token_hit_rate": (
                "Share of prompt tokens whose keys/values came from the prefix cache.",
                _rate(stats.get("prefix_reused_tokens", 0), stats.get("prefix_lookup_tokens", 0))),
            "chatconform_prefix_cache_bytes": ("Bytes held by the prefix cache.", stats.get("prefix_bytes", 0)),
        }
        for name, (text, value) in gauges.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge", f"{name} {value}"]
        counters = {
            "chatconform_decode_steps_total": ("Batched decode steps run.", stats.get("steps", 0)),
            "chatconform_generated_tokens_total": ("Completion tokens generated.", stats.get("tokens", 0)),
            "chatconform_cache_hits_total": ("Requests answered from the cache.", self.cache_hits),
            "chatconform_prefix_cache_lookups_total": ("Prefills that looked up the prefix cache.",
                                                       stats.get("prefix_lookups", 0)),
            "chatconform_prefix_cache_hits_total": ("Prefills that reused at least one stored block.",
                                                    stats.get("prefix_hits", 0)),
            "chatconform_prefix_cache_prompt_tokens_total": ("Prompt tokens of the prefills that looked up.",
                                                             stats.get("prefix_lookup_tokens", 0)),
            "chatconform_prefix_cache_reused_tokens_total": ("Prompt tokens not computed: reused from the cache.",
                                                             stats.get("prefix_reused_tokens", 0)),
        }
        for name, (text, value) in counters.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} counter", f"{name} {value}"]
        return "\n".join(lines) + "\n"
