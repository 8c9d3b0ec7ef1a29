"""DVC stage `word2vec`: the custom embedding, one gensim model per split (Table 2's 'custom' row)."""

from __future__ import annotations

from replication.data.store import read_cohort
from replication.experiments.table2 import custom_embeddings
from replication.io import atomic_path, write_json
from replication.params import load_params
from replication.stages import arguments, timed


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv, __doc__, "cohort", "out")
    params = load_params()
    with timed("word2vec", args.timings):
        cohort = read_cohort(args.cohort)
        vectors, summary = custom_embeddings(cohort, params.text, params.word2vec, params.seed)
        with atomic_path(args.out) as tmp:
            tmp.mkdir()
            for k, column in enumerate(cohort.split_columns):
                vectors[column].save(str(tmp / f"split_{k}.kv"))
            write_json(tmp / "manifest.json", {"corpus": params.word2vec.corpus, "synthetic": cohort.synthetic, "splits": summary})
    for column, s in summary.items():
        print(f"word2vec {column}: {s['words']} words, coverage {s['coverage']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
