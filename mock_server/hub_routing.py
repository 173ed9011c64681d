"""Point huggingface_hub's Inference Providers routing at a mock server, for an application's tests.

`InferenceClient(provider="cerebras", api_key=os.environ["HF_TOKEN"])` builds its URLs from the
router's address and asks the Hub which providers serve the model (its "provider mapping"). With
`route_hub_to(base_url, monkeypatch)` (the `chatconform_providers` fixture does it):

* the router's address is the mock's: `{base_url}/{provider}/...` for a provider, `{base_url}` for
  the auto-router (`provider="auto"` or none), so every call lands on the mock's router routes;
* a provider's direct address (used with a provider's own key instead of an `hf_` token) is the
  mock's too: nothing leaves the machine;
* the provider mapping is answered locally: every provider the client knows serves every model,
  live, under the model's own id, so the request's `model` is the id the application named;
* hf-inference's check that the model supports the task is skipped (it asks the Hub);
* `HF_TOKEN` is set to a placeholder when the environment has none, so code that reads it runs.

All of it is undone when the monkeypatch is (at the end of the test). It relies on huggingface_hub
2.x's internals (`inference._providers`), which is why it lives here, tested against the
installed version, and not in an application's code.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

PLACEHOLDER_TOKEN = "hf_chatconform_mock"  # an hf_ token: the client routes through the (mock) router
CONVERSATIONAL = "conversational"


def route_hub_to(base_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Send huggingface_hub's provider calls to the mock at base_url (undone with the monkeypatch)."""
    from huggingface_hub import constants
    from huggingface_hub.hf_api import InferenceProviderMapping
    from huggingface_hub.inference import _providers
    from huggingface_hub.inference._providers import _common, hf_inference

    base = base_url.rstrip("/")
    monkeypatch.setattr(constants, "INFERENCE_PROXY_TEMPLATE", base + "/{provider}")
    for provider, tasks in _providers.PROVIDERS.items():
        for helper in tasks.values():
            monkeypatch.setattr(helper, "base_url", f"{base}/{provider}")
    monkeypatch.setattr(_providers.CONVERSATIONAL_AUTO_ROUTER, "base_url", base)
    providers = [name for name, tasks in _providers.PROVIDERS.items() if CONVERSATIONAL in tasks]

    def mapping(model: str) -> list[InferenceProviderMapping]:
        # huggingface_hub declares InferenceProviderMapping.__init__(self, **kwargs) without types.
        return [InferenceProviderMapping(provider=name, hf_model_id=model, providerId=model,  # type: ignore[no-untyped-call]
                                         status="live", task=CONVERSATIONAL) for name in providers]

    monkeypatch.setattr(_common, "_fetch_inference_provider_mapping", mapping)
    monkeypatch.setattr(_providers, "_fetch_inference_provider_mapping", mapping)
    monkeypatch.setattr(hf_inference, "_check_supported_task", lambda model, task: None)
    if not (os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")):
        monkeypatch.setenv("HF_TOKEN", PLACEHOLDER_TOKEN)
