"""Evaluation: generation, judges, safety rates with intervals, perplexity and multiple choice."""

from .evaluate import BENIGN_FILE, HARMFUL_FILE, METRICS_FILE, SUITES, EvalConfig, evaluate_model
from .generation import generate, write_generations
from .degenerate import degenerate_reason
from .judges import DEFAULT_JUDGE, DEFAULT_KEYWORDS, REFUSAL_LISTS, KeywordJudge, ModelJudge, make_judge
from .mcq import MCQItem, load_mcq, mcq_accuracy
from .metrics import bootstrap_interval, clopper_pearson_interval, proportion, restoration_rate, wilson_interval
from .paired import mcnemar_exact, paired_difference, restoration_rate_interval
from .outcomes import OUTCOMES, outcome_counts, outcome_rates
from .refusal import VERDICTS, RefusalJudge
from .rejudge import rejudge
from .rubric import RubricJudge, rubric_verdict
from .perplexity import load_text, perplexity

__all__ = [
    "BENIGN_FILE",
    "DEFAULT_JUDGE",
    "DEFAULT_KEYWORDS",
    "HARMFUL_FILE",
    "METRICS_FILE",
    "OUTCOMES",
    "REFUSAL_LISTS",
    "SUITES",
    "VERDICTS",
    "EvalConfig",
    "KeywordJudge",
    "MCQItem",
    "ModelJudge",
    "RefusalJudge",
    "RubricJudge",
    "bootstrap_interval",
    "clopper_pearson_interval",
    "degenerate_reason",
    "evaluate_model",
    "generate",
    "load_mcq",
    "load_text",
    "make_judge",
    "mcq_accuracy",
    "mcnemar_exact",
    "outcome_counts",
    "outcome_rates",
    "paired_difference",
    "perplexity",
    "rejudge",
    "proportion",
    "restoration_rate",
    "restoration_rate_interval",
    "rubric_verdict",
    "wilson_interval",
    "write_generations",
]
