"""DVC stage `table2`: paper Table 2, the text CNN per embedding variant (+ ablations) and the baselines, over the splits."""

from __future__ import annotations

from replication.data.store import read_cohort
from replication.experiments.reference import load_reference
from replication import statistics as st
from replication.experiments.table2 import BASELINES, run_table2, table2_markdown, table2_metrics, table2_tests
from replication.io import atomic_path, write_json, write_text
from replication.params import load_params, plain
from replication.stages import arguments, timed
from replication.tracking import log_history, series_name


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv, __doc__, "cohort", "word2vec", "reference", "results")
    params = load_params()
    with timed("table2", args.timings):
        cohort = read_cohort(args.cohort)
        result = run_table2(cohort, args.word2vec, params.text, params.word2vec, params.text_cnn, params.table2, params.seed)
        tests = table2_tests(result.runs, params.statistics, params.seed)
        with atomic_path(args.results) as tmp:
            tmp.mkdir()
            write_json(tmp / "metrics.json", {**table2_metrics(result), "test": st.summary_metrics(tests)})
            write_json(tmp / "manifest.json", {"synthetic": cohort.synthetic, "source": cohort.source, "profile": params.profile,
                                               "corpus": result.corpus, "summary": result.summary, "notes": result.notes,
                                               "params": {s: plain(getattr(params, s)) for s in ("text", "word2vec", "text_cnn", "table2")}})
            write_json(tmp / "runs.json", result.runs)
            write_json(tmp / "tests.json", tests)
            for (variant, column), history in result.histories.items():
                log_history(tmp / "epochs" / series_name(variant, column), history)
            write_text(tmp / "table2.md", table2_markdown(result.summary, load_reference(args.reference), cohort.synthetic) + "\n"
                       + st.tests_markdown(tests, tests["splits"], "Table 2 on the test split", BASELINES, params.statistics.confidence))
    print(open(f"{args.results}/table2.md").read())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
