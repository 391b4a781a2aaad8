"""What a model takes as it is (`Policy.accepts`): its route's `accepts`, the default otherwise, and
for a fine-tuned model (`ft:<base>:<tenant>:<suffix>:<id>`, a LoRA adapter) its base's route, so a
Long-VITA adapter gets images as pixels as its base does (docs/vision.md)."""

from __future__ import annotations

from gateway.settings.policy import Policy
from gateway.settings.sections import ModelRoute

ROUTES = {
    "tiny-long-vita": ModelRoute(upstreams=["vision"], accepts=["text", "image", "video"]),
    "tiny": ModelRoute(upstreams=["engine"]),
}


def test_a_route_says_what_its_model_takes_and_the_default_covers_the_rest() -> None:
    policy = Policy(models=ROUTES, media_default_accepts=("text",))
    assert policy.accepts("tiny-long-vita") == ("text", "image", "video")
    assert policy.accepts("tiny") == ("text",)
    assert policy.accepts("unknown") == ("text",)


def test_a_fine_tuned_model_takes_what_its_base_takes() -> None:
    policy = Policy(models=ROUTES, media_default_accepts=("text",))
    assert policy.accepts("ft:tiny-long-vita:t1:cats:0a1b2c3d") == ("text", "image", "video")
    assert policy.accepts("ft:tiny-long-vita:t1:cats") == ("text", "image", "video")  # the loop's alias
    assert policy.accepts("ft:tiny:t1::0a1b2c3d") == ("text",)
    assert policy.accepts("ft:unknown:t1::0a1b2c3d") == ("text",)
    assert policy.accepts("ft:") == ("text",)
