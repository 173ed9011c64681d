"""Which model ids the server answers to, and which id each answer carries.

One model is loaded. By default any model id is served by it, as an alias: an application's code
that names `google/gemma-2-2b-it`, `gpt-4o-mini` or `meta-llama/Llama-3.3-70B-Instruct` runs
unchanged, and the answer's `model` echoes the id that was asked for. `GET /v1/models` lists the
served id, then the aliases configured with `--alias`.

With `--strict-models` only the served id and the configured aliases are served; any other id is
refused with 404, on the body's `model` and on the `/models/{model_id}/...` route alike (what the
conformance suite's embedded mock runs with, so that the suite can judge the 404 clause).

Either way, the placeholders clients send for "whatever is served" (huggingface_hub sends `dummy`
with a base_url; TGI's clients `tgi`) and an absent `model` mean the served model, and a body's
`model` that disagrees with the model in the path is refused with 422. The router's suffixes
(`model:cerebras`, `model:fastest`; router.py) name where to run the model, not another model:
they are read off before the id is looked up, and echoed as sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from mock_server.errors import NotFound, ValidationFailed
from mock_server.router import split_model

# Values clients put in `model` for "whatever is served".
PLACEHOLDER_MODELS = frozenset({"tgi", "dummy", "default", ""})


@dataclass(frozen=True)
class ModelCatalog:
    """The served id, its configured aliases, and whether other ids are refused."""

    served: str
    aliases: tuple[str, ...] = ()
    strict: bool = False

    @property
    def ids(self) -> tuple[str, ...]:
        """The ids GET /v1/models lists: the served one first, then the aliases."""
        return (self.served, *(a for a in self.aliases if a != self.served))

    def serves(self, model_id: str) -> bool:
        """Whether a request naming this id (a router suffix aside) is answered (always, unless strict)."""
        base, _ = split_model(model_id)
        return not self.strict or base in self.ids or base in PLACEHOLDER_MODELS

    def check_path(self, path_model: str) -> None:
        """404 for a route's model this server does not serve."""
        if not self.serves(path_model):
            raise NotFound(f"model not found: {path_model} (this server serves {', '.join(self.ids)})",
                           param="model")

    def answer_id(self, requested: str | None, path_model: str | None = None) -> str:
        """The `model` the answer carries: the id asked for, else the route's, else the served one.

        Raises NotFound (strict, unknown id) or ValidationFailed (body and path disagree).
        """
        if path_model is not None:
            self.check_path(path_model)
        if requested is None or requested in PLACEHOLDER_MODELS:
            if path_model is not None and path_model not in PLACEHOLDER_MODELS:
                return path_model
            return self.served
        if path_model is not None and requested != path_model:
            raise ValidationFailed(f"$.model: {requested!r} disagrees with the model in the path {path_model!r} "
                                   f"[rule: model matches path]", param="model")
        if not self.serves(requested):
            raise NotFound(f"model not found: {requested} (this server serves {', '.join(self.ids)})",
                           param="model")
        return requested
