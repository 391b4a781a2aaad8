"""Text moderation by alt-profanity-check: a linear SVM (calibrated to a probability) over a
bag of words, trained on offensive, abusive and hateful comments (the Davidson et al. hate-speech
and offensive-language tweets and Wikipedia's toxic comments); its model ships in the wheel.

What it can judge, honestly: whether a text is offensive or abusive language. It cannot tell an
insult (harassment) from hate against a group, and it knows nothing of threats, self-harm,
sexual content, violence or illicit advice. Its one probability is therefore reported as the
score of `harassment` and of `hate` (the two categories offensive language falls in), and every
other category scores 0 (judged only by the optional LLM judge or the operator's banned terms).
"""

from __future__ import annotations

from collections.abc import Sequence

from adapters.moderation.categories import Scores, empty_scores

# The categories the classifier's one probability is reported under.
OFFENSIVE = ("harassment", "hate")


def text_scores(texts: Sequence[str]) -> list[Scores]:
    """Each text's scores (profanity_check loads its model on first import, ~10 ms)."""
    if not texts:
        return []
    from profanity_check import predict_prob  # imported here: the worker pays for it, not the gateway

    out = []
    for probability in predict_prob(list(texts)):
        scores = empty_scores()
        for name in OFFENSIVE:
            scores[name] = round(float(probability), 6)
        out.append(scores)
    return out
