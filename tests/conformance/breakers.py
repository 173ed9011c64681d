"""The catalogue of breakers: deliberate violations, each naming the clauses the suite must flag.

Each `Breaker` (see breaking_proxy.py) rewrites the traffic between the suite and a conforming mock
so that exactly one rule is broken; `clauses` lists the clause IDs that must then get verdict FAIL
(the suite runs with --strict, so SHOULD clauses fail too). The catalogue is kept by topic in
breakers_completion.py (requests, messages, response shape, usage, sampling, logprobs),
breakers_features.py (streams, tools, structured output, images), breakers_errors.py and
breakers_service.py (headers, routes, official clients, fuzz). Transforms live in breaker_hooks.py,
breaker_requests.py, breaker_stream.py and breaker_transforms.py.
"""

from __future__ import annotations

from dataclasses import replace

from tests.conformance.breaker_hooks import KEYED_TOKEN  # noqa: F401 - re-exported
from tests.conformance.breakers_completion import COMPLETION
from tests.conformance.breakers_errors import ERRORS
from tests.conformance.breakers_features import FEATURES
from tests.conformance.breakers_followups import FOLLOWUPS
from tests.conformance.breakers_observations import OBSERVATIONS
from tests.conformance.breakers_reference import REFERENCE
from tests.conformance.breakers_semantics import SEMANTICS
from tests.conformance.breakers_service import SERVICE
from tests.conformance.breakers_transport import TRANSPORT
from tests.conformance.breaking_proxy import IDENTITY, Breaker, BreakingProxy  # noqa: F401 - re-exported

_CATALOGUE: tuple[Breaker, ...] = (COMPLETION + FEATURES + ERRORS + SERVICE + OBSERVATIONS + SEMANTICS + TRANSPORT
                                   + REFERENCE + FOLLOWUPS)

# Observable only with the real model: the tiny model's random weights never end a reply before max_tokens
# and do not repeat words in a way penalties can reduce.
REAL_MODEL_ONLY = frozenset({"finish-stop-as-length", "frequency-penalty-inverted", "presence-penalty-inverted"})

BREAKERS: tuple[Breaker, ...] = tuple(replace(b, model="real") if b.name in REAL_MODEL_ONLY else b for b in _CATALOGUE)
BREAKERS_BY_NAME: dict[str, Breaker] = {b.name: b for b in BREAKERS}
