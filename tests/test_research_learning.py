"""The offline analyser learns from people (issue 26, item 12): the pure learner, the ratings and decisions
it reads (SQLite and PostgreSQL), `autarky research rate`, and offline analyses stored under the learned
model's name."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy
import sqlalchemy as sa

from activities.research.analysis import AnalysisActivities
from activities.research.offline_analyser import offline_model_label
from activities.storage.handle import KnowledgeBaseHandle
from activities.storage.knowledge_base import KnowledgeBase, head_revision
from activities.storage.ratings import Ratings
from autarky.core.settings import AutarkySettings
from autarky.research.items import AnalysisIn, ExperimentUpdate, ItemIn
from autarky.research.learning import Decision, LearningParams, LearningScorer, fit, learned_label
from autarky.research.relevance import MODEL, RelevanceScorer
from autarky.research.types import AnalyseInput
from bench.research_quality import load
from tests.test_cli import cli
from tests.test_knowledge_base import db_url, kb  # noqa: F401 (fixtures: both databases)
from tests.test_research_queue import downgrade

PROOF = (
    "On the convergence of Adam with heavy-tailed noise: a proof",
    "We prove high-probability convergence rates of Adam and SGD with clipping for non-convex stochastic "
    "optimization.",
)
PRACTICAL = (
    "Learning rate warmup speeds up training of transformers on GPUs",
    "A warmup schedule for the optimizer lets training use a larger learning rate and reach the target loss "
    "in less GPU time.",
)
DECISIONS = [
    Decision(
        1,
        "A convergence proof for Adam under relaxed smoothness",
        "We prove that Adam converges to stationary points for non-convex stochastic optimization with a "
        "tight rate and a lower bound.",
        False,
    ),
    Decision(
        2,
        "Convergence rates of adaptive gradient methods",
        "We prove optimal convergence rates for AdaGrad and Adam in strongly convex stochastic optimization "
        "with decaying learning rates.",
        False,
    ),
    Decision(
        3,
        "Learning rate schedules that cut training time on GPUs",
        "A schedule-free optimizer reaches the target loss of language model training in less GPU time, "
        "with no tuning.",
        True,
    ),
    Decision(
        4,
        "Mixed precision training halves GPU memory",
        "Training neural networks in half precision with loss scaling keeps accuracy and speeds up training "
        "on GPUs.",
        True,
    ),
]


# --- the pure learner -------------------------------------------------------------------------------------


def test_without_a_decision_of_each_kind_the_cold_start_is_the_shipped_scorer() -> None:
    cold = RelevanceScorer()
    items = [PROOF, PRACTICAL, ("Raft consensus made simple", "Leader election and log replication.")]
    shipped = cold.score_many(items)
    for decisions in ([], [d for d in DECISIONS if d.good], [d for d in DECISIONS if not d.good]):
        scorer = LearningScorer(cold, decisions)
        assert scorer.learned is None and scorer.model_name == MODEL
        assert scorer.score_many(items) == shipped
        assert [scorer.score(*item) for item in items] == shipped
    assert fit(DECISIONS[:2], [0.8, 0.8]) is None


def test_ratings_move_an_items_neighbours_and_flipping_them_flips_the_order() -> None:
    cold = RelevanceScorer()
    assert cold.score(*PROOF).score > 0.7  # the cold start's false positive (the Adam proof)
    learned = LearningScorer(cold, DECISIONS)
    proof, practical = learned.score(*PROOF), learned.score(*PRACTICAL)
    assert proof.score < 0.5 < practical.score, (proof, practical)
    assert proof.model == learned.model_name != MODEL
    assert "Learned from 4 decisions" in proof.rationale and proof.interest == cold.score(*PROOF).interest

    flipped = LearningScorer(cold, [replace(d, good=not d.good) for d in DECISIONS])
    assert flipped.score(*PROOF).score > flipped.score(*PRACTICAL).score
    assert flipped.model_name != learned.model_name  # a changed verdict is a new model


def test_learning_is_deterministic_and_ignores_the_decisions_order() -> None:
    cold = RelevanceScorer()
    a = LearningScorer(cold, DECISIONS)
    b = LearningScorer(cold, list(reversed(DECISIONS)))
    assert a.model_name == b.model_name == learned_label(DECISIONS)
    for item in (PROOF, PRACTICAL):
        assert a.score(*item).score == pytest.approx(b.score(*item).score, abs=1e-9)
    assert LearningScorer(cold, DECISIONS).score(*PROOF) == a.score(*PROOF)


def test_stronger_regularisation_stays_closer_to_the_cold_start() -> None:
    cold = RelevanceScorer()
    start = cold.score(*PROOF).score
    loose = LearningScorer(cold, DECISIONS, LearningParams(l2=0.1)).score(*PROOF).score
    tight = LearningScorer(cold, DECISIONS, LearningParams(l2=100.0)).score(*PROOF).score
    assert loose < tight < start


def test_fitting_the_labelled_set_learns_from_every_decision() -> None:
    """How long a fit takes is bench/research_quality.py's figure, not a test's."""
    items = load()
    decisions = [Decision(i.id, i.title, i.text, i.relevant) for i in items]
    cold = RelevanceScorer()
    scores = [r.score for r in cold.score_many([(d.title, d.text) for d in decisions])]
    model = fit(decisions, scores)
    assert model is not None and model.decisions == len(items)
    with pytest.raises(ValueError, match="2 decisions but 1 cold-start scores"):
        fit(decisions[:2], scores[:1])


# --- ratings and decisions in the knowledge base ----------------------------------------------------------


def _item(store: KnowledgeBase, n: int, title: str, text: str = "") -> int:
    item = ItemIn(kind="paper", source="arxiv", source_id=f"2601.{n:05d}", title=title, abstract=text)
    return store.upsert_item(item).item_id


def _decide(store: KnowledgeBase, workflow_id: str, item_id: int, state: str) -> None:
    store.create_or_get_experiment(workflow_id, item_id)
    store.update_experiment(ExperimentUpdate(workflow_id=workflow_id, state=state))


def test_ratings_replace_and_override_experiment_decisions(kb: KnowledgeBase) -> None:  # noqa: F811
    ratings = Ratings(kb)
    a, b, c, d = (_item(kb, n, f"Item {n}", f"text {n}") for n in range(4))
    assert ratings.decisions() == []
    _decide(kb, "experiment-a", a, "approved")
    _decide(kb, "experiment-b", b, "rejected")
    _decide(kb, "experiment-c", c, "expired")  # decides nothing
    _decide(kb, "experiment-d", d, "awaiting_approval")
    signature = ratings.signature()
    assert [(x.item_id, x.good) for x in ratings.decisions()] == [(a, True), (b, False)]

    assert ratings.rate(c, good=True) is None
    assert ratings.rate(a, good=False) is None  # a rating overrides the experiment's fate
    assert ratings.rate(c, good=False) is True  # rating again replaces
    assert ratings.signature() != signature
    decided = ratings.decisions()
    assert [(x.item_id, x.good) for x in decided] == [(a, False), (b, False), (c, False)]
    assert decided[2].title == "Item 2" and decided[2].text == "text 2"
    with kb.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM item_ratings")).scalar_one() == 2

    with pytest.raises(ValueError, match="no research item 999: `autarky research list` shows"):
        ratings.rate(999, good=True)


def test_the_ratings_migration_keeps_what_was_stored(db_url: str) -> None:  # noqa: F811
    store = KnowledgeBase(db_url)
    store.migrate("0010")
    item = _item(store, 1, "Stored before the ratings table")
    store.migrate()
    assert store.revision() == head_revision()
    assert store.item(item)["title"] == "Stored before the ratings table"
    assert Ratings(store).rate(item, good=True) is None
    downgrade(store, "0010")  # and back: the ratings go, the items stay
    assert store.revision() == "0010"
    assert "item_ratings" not in sqlalchemy.inspect(store.engine).get_table_names()
    assert store.item(item) is not None
    store.close()


# --- the offline analysis and the CLI --------------------------------------------------------------------


async def test_offline_analyses_after_ratings_use_the_learned_scores_and_a_new_model_name(
    tmp_path: Path,
) -> None:
    settings = AutarkySettings(data_dir=tmp_path)
    handle = KnowledgeBaseHandle(settings.knowledge_db_url)
    analysis = AnalysisActivities(settings, handle, environ={})
    store = handle.get()
    ids = {d.item_id: _item(store, d.item_id, d.title, d.text) for d in DECISIONS}
    proof = _item(store, 100, *PROOF)
    assert await offline_model_label(settings, handle) == MODEL

    before = await analysis.analyse_item(AnalyseInput(cycle_id="c1", item_id=proof))
    assert before.model == MODEL and before.score == RelevanceScorer().score(*PROOF).score > 0.7

    ratings = Ratings(store)
    for d in DECISIONS:
        ratings.rate(ids[d.item_id], d.good)
    label = await offline_model_label(settings, handle)
    assert label.startswith(f"{MODEL}+lr4-") and label != MODEL
    after = await analysis.analyse_item(AnalyseInput(cycle_id="c2", item_id=proof))
    assert after.model == label and after.analysis_id != before.analysis_id
    assert after.score < 0.5  # the people's verdicts on its neighbours, not the cold start's 0.83
    stored = store.find_analysis(proof, "offline", label, "research-1")
    assert stored is not None and "Learned from 4 decisions" in stored["rationale"]

    # The same decisions again: the same model, nothing analysed twice.
    again = await analysis.analyse_item(AnalyseInput(cycle_id="c3", item_id=proof))
    assert again.analysis_id == after.analysis_id
    ratings.rate(ids[1], True)  # one verdict changed: a new model name, so recent items are analysed again
    assert await offline_model_label(settings, handle) != label


async def test_research_rate_stores_validates_and_replaces(tmp_path: Path) -> None:
    environ = {"AUTARKY_DATA_DIR": str(tmp_path)}
    code, out = await cli(None, "research", "rate", "1", "good", **environ)
    assert code == 1 and "no research cycle has run" in out, out

    settings = AutarkySettings(data_dir=tmp_path)
    store = KnowledgeBase(settings.knowledge_db_url)
    store.migrate()
    item = _item(store, 7, "SWE-agent: agent-computer interfaces for software engineering")
    store.record_analysis(AnalysisIn(item_id=item, provider="offline", model=MODEL, score=0.69))

    code, out = await cli(None, "research", "rate", str(item), "good", **environ)
    assert code == 0 and f"item {item} rated good" in out, out
    code, out = await cli(None, "research", "rate", str(item), "bad", **environ)
    assert code == 0 and "rated bad (was good)" in out, out
    assert [(d.item_id, d.good) for d in Ratings(store).decisions()] == [(item, False)]

    code, out = await cli(None, "research", "rate", "999", "good", **environ)
    assert code == 1 and "no research item 999: `autarky research list` shows the items' ids" in out, out
    code, out = await cli(None, "research", "rate", str(item), "maybe", **environ)
    assert code == 1 and "the verdict is good or bad, not 'maybe'" in out, out
    assert [(d.item_id, d.good) for d in Ratings(store).decisions()] == [(item, False)]  # nothing lost

    code, out = await cli(None, "research", "list", "--min-score", "0", **environ)
    assert code == 0 and str(item) in out.split("SWE-agent")[1], out  # the id `rate` takes is listed
    store.close()
