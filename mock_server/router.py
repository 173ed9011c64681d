"""The Inference Providers router, emulated: its routes, its model ids and its model list.

Hugging Face's router (router.huggingface.co) serves:

* the OpenAI-compatible API at `/v1/chat/completions`, for model ids that may name a provider or a
  selection policy after a colon: `openai/gpt-oss-120b:cerebras`, `meta-llama/Llama-3.3-70B-Instruct:fastest`;
* each provider's own API under `/{provider}/...`, as huggingface_hub's
  `InferenceClient(provider=...)` calls it (the routes below are the ones huggingface_hub 2.x builds;
  `hf-inference` puts the model in the path);
* `GET /v1/models`, each model with the providers that serve it, and what each supports.

The mock answers all of them with its one model: a `:provider` or `:policy` suffix is read off
the id (for --strict-models, the id without it must be served), and every provider route is the
chat route. Which ids are served: models.py. Pointing huggingface_hub at these routes: the
`chatconform_providers` fixture (hub_routing.py).
"""

from __future__ import annotations

from typing import Any

# provider -> its chat route, below /{provider} (huggingface_hub's `_prepare_route` for conversational tasks).
PROVIDER_ROUTES: dict[str, str] = {
    "baseten": "/v1/chat/completions",
    "cerebras": "/v1/chat/completions",
    "cohere": "/compatibility/v1/chat/completions",
    "deepinfra": "/v1/openai/chat/completions",
    "featherless-ai": "/v1/chat/completions",
    "fireworks-ai": "/inference/v1/chat/completions",
    "groq": "/openai/v1/chat/completions",
    "hf-inference": "/models/{model_id:.+}/v1/chat/completions",
    "novita": "/v3/openai/chat/completions",
    "nscale": "/v1/chat/completions",
    "openai": "/v1/chat/completions",
    "ovhcloud": "/v1/chat/completions",
    "publicai": "/v1/chat/completions",
    "scaleway": "/v1/chat/completions",
    "together": "/v1/chat/completions",
    "zai-org": "/api/paas/v4/chat/completions",
}
# The router's selection policies, usable in place of a provider: `model:fastest`.
POLICIES = ("fastest", "cheapest", "preferred")


def chat_paths() -> list[str]:
    """Every provider's chat route, as aiohttp route paths."""
    return [f"/{provider}{route}" for provider, route in PROVIDER_ROUTES.items()]


def split_model(model_id: str) -> tuple[str, str | None]:
    """(the model id, the provider or policy it names) for `id:provider`; (id, None) without a known suffix.

    A colon followed by anything else stays in the id (an OpenAI fine-tune id holds colons).
    """
    base, colon, suffix = model_id.rpartition(":")
    if colon and base and (suffix in PROVIDER_ROUTES or suffix in POLICIES):
        return base, suffix
    return model_id, None


def provider_entries(context_length: int | None, *, tools: bool, structured_output: bool) -> list[dict[str, Any]]:
    """The `providers` of one /v1/models entry, in the router's shape: every emulated provider, live."""
    return [{"provider": provider, "status": "live", "context_length": context_length,
             "supports_tools": tools, "supports_structured_output": structured_output}
            for provider in PROVIDER_ROUTES]
