"""The report's explanatory prose, as ``str.format`` templates filled in by the sections that use them."""

# --- overview --------------------------------------------------------------------------------------------

RUN = (
    "Benchmarks run: {benchmarks}. Methods: {methods}. Samples: {n} scored, of which {failed} failed "
    "(a failed sample scores 0 and stays in the denominator)."
)
SCORES = (
    "Scores are percent: accuracy, or for {mra} the mean of accuracy and MRA (mean relative accuracy on "
    "numerical-answer items). Rows in italics labelled **(paper)** are the MARC paper's printed figures "
    "(in the SCORE Table 1 section, the SCORE paper's); every other number is ours. {missing} marks a "
    "benchmark we did not run. † marks a score with failed samples."
)
NOT_COMPARABLE = (
    "> **Not comparable to the paper.** This run scored none of the paper's six benchmarks, only "
    "{benchmarks}. The paper's figures in Tables 1-3 were measured with 2B-4B video LLMs (Qwen2.5-VL-3B and "
    "peers) on real benchmarks (VSI-Bench, VideoMMMU, MMVU, MVBench, TempCompass, VideoMME); they are shown "
    "for reference only, and our rows there are {missing}."
)

# The sentence under each table of our scores: the answer rule that scored them (``eval.answer_rule``).
ANSWER_RULE = {
    "strict": (
        "Our scores here: the **strict** answer rule (`eval.answer_rule: strict`), the text inside an output's "
        "first `<answer>...</answer>`; an output without it scores 0."
    ),
    "whole-output": (
        "Our scores here: the **whole-output** answer rule (`eval.answer_rule: whole-output`, Video-R1's "
        "`eval_bench.py`, as the paper scored), the text inside an output's first `<answer>...</answer>`, or "
        "the whole output when it has none."
    ),
}

# --- our own suites ------------------------------------------------------------------------------------

OWN_SUITE = (
    "{name}: {description}. Our own suite: the paper has no figures for it, and its scores are not "
    "comparable to the paper's real-benchmark numbers."
)
PRIOR_ANSWER = (
    "`{prior}` is no model: each item gets the most common training answer of its problem type (a "
    "majority-answer baseline, stronger than guessing where one answer dominates, as durations do); a model "
    "at or below it on a problem type has learnt the answer format but not what the video shows. Score "
    "above `{prior}`, in points: {margins}."
)
CHANCE = (
    "Chance on the multiple-choice items (guessing uniformly among each item's options): {levels}. Above "
    "chance is MC accuracy minus chance, in points. p (guessing) is the probability that guessing gets at "
    "least as many items right (exact, one-sided): below 0.05 a method is above chance with 95 % "
    "confidence; above it the margin may be luck. {verdict}"
)
CHANCE_NOT_SHOWN = (
    "Chance level not shown: it needs each item's options, which the records do not hold (pass "
    "`multiple_choice=multiple_choice_vs_chance(records, rows)`)."
)
ABOVE_CHANCE = "Above chance with 95 % confidence: {methods}."
NONE_ABOVE_CHANCE = "No method is above chance with 95 % confidence."
NONE_ABOVE_CHANCE_ON_A_CATEGORY = "No method is above chance with 95 % confidence on any category."
BY_CATEGORY = (
    "Multiple-choice accuracy per category, % (in brackets: points above chance; * where guessing gets as "
    "many right less than 5 % of the time):"
)
BY_TYPE = (
    "Mean reward per problem type, % (multiple choice and numbers: right or wrong; regression: MRA; "
    "free-form: mean ROUGE-1/2/L F1 against the reference; failed samples count 0):"
)
BY_TYPE_AGAINST_PRIOR = "Problem types on which a method's mean reward is above `{prior}`'s: {counts}."

# --- the paper's tables and figures ----------------------------------------------------------------------

PAPER_TABLE = (
    "Mean is over the six benchmarks ({missing} unless all six ran). Frames: frames fed, or for compressed "
    "methods the frames' worth of tokens left (paper Table 1 note)."
)
BYTEVIDEOLLM_ROUNDING = (
    "ByteVideoLLM pools each temporal group to s × s tokens, B being the method's budget in tokens and T "
    "the temporal groups (32 at 64 frames): {methods} ran the `{rounding}` rule, {rule}."
)
# The pooled side's rule by the method's ``rounding`` option (BASELINES.md section 3c).
BYTEVIDEOLLM_RULES = {
    "round": (
        's = max(1, round(√(B/T))), MARC\'s "adjusted pooling ratio" (at B = 120, T = 32: s = 2, 128 '
        "tokens), where ByteVideoLLM's official rule floors (s = 1, 32 tokens)"
    ),
    "floor": (
        "s = max(1, ⌊√(B/T)⌋), ByteVideoLLM's official rule (at B = 120, T = 32: s = 1, 32 tokens), where "
        'MARC "adjusted the pooling ratio" to about B (s = 2, 128 tokens)'
    ),
}
VISUAL_TOKENS = "Mean visual tokens the LLM saw per sample, over the samples that ran."
ACCURACY_VS_TOKENS = (
    "Each point is one method: its score against the mean visual tokens per sample that the LLM saw (log "
    "scale). A colour is a family of methods (every `vidcom2@*` one colour), a marker one member of it "
    "(its budget), and the legend below the panels names each method. Hollow grey squares are the paper's "
    "figures (Table 1 scores, Table 4 token counts), drawn only on the paper's benchmarks."
)
FAILURES = "Samples whose media could not be read; each scores 0 and the reason is in its record's `error`."

# --- SCORE Table 1 -------------------------------------------------------------------------------------

SCORE_TABLE = (
    "SCORE's Table 1 ({setting}): the compared compressors keep R = 40 %, 25 % or 10 % of the visual "
    "tokens. For each R, the paper's rows (italics), then ours in the same order: the same method at the "
    "same retention (`vidcom2@0.25` beside VidCom2 at 25 %, `baseline-64f` beside the vanilla model), "
    "{missing} where it did not run, then any other method of ours at that retention. Avg is the mean of "
    "LVBench, MLVU and VideoMME; Acc % is Avg relative to vanilla. Our columns: the score on each "
    "benchmark that ran, their Mean ({missing} unless all ran), % of uncompressed (the Mean relative to "
    "`baseline-64f`'s, the analogue of Acc %), mean visual tokens per sample over the benchmarks the "
    "method ran, and the retention the records show (its visual tokens over `baseline-64f`'s on the same "
    "benchmark, averaged over the benchmarks both ran)."
)
SCORE_NOT_COMPARABLE = (
    "> **Not comparable to SCORE's figures.** SCORE measured Qwen2.5-VL-7B at up to 128 frames on "
    "LVBench, MLVU and VideoMME; our rows are this profile's model at 64 frames on {benchmarks}, in "
    "their own columns. Only the relative figures can be read side by side: % of uncompressed against "
    "Acc %, the retention the records show against R."
)
SCORE_DYCOKE = (
    "DyCoke has no 10 % row: its passes keep every anchor frame whole, so it cannot go below about 28 % "
    "of the tokens at 32 groups."
)
EFFICIENCY_DEFINITIONS = (
    "Compressor + prefill is SCORE's Table 3 total (the compressor and the LLM's prefill, the vision tower "
    "excluded); end-to-end is ours: processor, vision tower, compressor and the whole answer."
)
SCORE_NOT_RUN = "Our rows of SCORE itself are {missing} until the `score@*` methods run."
SCORE_NO_BASELINE = (
    "`baseline-64f` did not run, so % of uncompressed and the retention the records show are {missing}."
)
SCORE_UNCOMPRESSED = (
    "**Uncompressed (R = 100 %).** SCORE Table 3 (VideoMME): {tokens} visual tokens per sample."
)
SCORE_RETENTION = (
    "**R = {percent} %.** SCORE Table 3 (VideoMME): {tokens} visual tokens per sample, {share:.1f} % of "
    "vanilla's."
)
SCORE_RETENTION_NOT_IN_PAPER = "**R = {percent} %.** SCORE prints no row at this retention."

# --- efficiency: the report's section ------------------------------------------------------------------

NO_EFFICIENCY_PROFILE = "No efficiency profile was given; run the `efficiency_profile` asset."
EFFICIENCY_SETTING = (
    "`{model}` on {device}, {dtype}. Protocol: {protocol}. Input: {input}. Times are seconds per sample; "
    "memory is {memory} in GB, for the whole batch. Compressor: the compression step between the vision tower and the LLM "
    "(MARC's memory-aware merge, or a compared method's compressor); 0 without compression."
)
EFFICIENCY_BOUND = (
    "The vision tower takes **{share:.1f}%** of end-to-end time for `{method}`. Compression after the "
    "encoder leaves that part untouched, so on this input it can save at most {rest:.1f}% of end-to-end "
    "time; the vision share of each method is in the last column above."
)
EFFICIENCY_CHANGE = (
    "Change relative to `{method}` (negative is cheaper). The paper's row is its reported reduction "
    "({paper_setting}; peak GPU memory 41.63 → 11.48 GB)."
)

# How the samples were measured (the profile's efficiency section), by its source.
EFFICIENCY_PROTOCOL = (
    "batch {batch_size} of {samples}, answer-only prompt, {repeats} timed run(s) per method (each method's "
    "row is its run with the median end-to-end time)"
)
# A profile written before its source and timed runs were recorded (its input states the runs).
EFFICIENCY_PROTOCOL_RUNS_IN_INPUT = (
    "batch {batch_size} of {samples}, answer-only prompt, as many timed runs per method as the input states"
)
EFFICIENCY_LONGEST = "copies of the eval set's longest video (`efficiency.source: longest`)"
EFFICIENCY_ONE_VIDEO = "copies of one video"
EFFICIENCY_BENCHMARK = "the first {batch_size} video samples of {name} (`efficiency.source: {source}`)"

# --- efficiency: the profile on its own (format_table) ---------------------------------------------------

PROFILE_SETTING = (
    "`{model}` on {device}, {dtype}. Protocol: {protocol}. {input}. Seconds per sample; memory is the "
    "{memory} in GB (2^30 bytes) for the whole batch, weights included. Compressor: the compression step between the vision "
    "tower and the LLM (MARC's memory-aware merge, or a compared method's compressor)."
)
PROFILE_RATIOS = "Ratios to `{method}` (1.00x = the same cost):"
PROFILE_BOUND = (
    "The vision tower takes {share:.1%} of `{method}`'s end-to-end time. Compression after the encoder "
    "(MARC merges the vision tower's output) leaves that part untouched, so with the same frames in it can "
    "save at most {rest:.1%} of end-to-end time here."
)
