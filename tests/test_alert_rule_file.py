"""Users' alert rule files: good files parse, each problem names its exact line, rules behave."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.alerts.rule_file import (
    BUILT_IN_NAMES,
    MAX_FILE_BYTES,
    PLACEHOLDERS,
    RuleFileError,
    UserRule,
    format_duration,
    load_rule_file,
    parse_duration,
    parse_rules,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "alert-rules.example.toml"

GOOD = """\
# the lab's rules

[[rule]]
name = "hot-gpu"
metric = "temp_c"
op = ">"
threshold = 85
for = "5m"          # a sustained heat, not a spike
clear = 80
severity = "critical"
hosts = ["gpu-node-*"]
gpus = ["0", "GPU-1234*"]
message = "{host} GPU {gpu_index} is at {value} °C"

[[rule]]
name = "idle_power"
metric = "power_w"
op = "<="
threshold = 30.5
"""

# a well-formed rule, to which each case below adds or changes one thing
BASE = ['name = "r1"', 'metric = "temp_c"', 'op = ">"', "threshold = 85"]


def rule_text(*extra: str, drop: str = "", rule_name: str = "r1") -> str:
    """Return one [[rule]] table: the header on line 1, then BASE less drop, then extra."""
    lines = [line for line in BASE if not line.startswith(f"{drop} =")] if drop else list(BASE)
    lines = [f'name = "{rule_name}"' if line.startswith("name =") else line for line in lines]
    return "\n".join(["[[rule]]", *lines, *extra]) + "\n"


def problem_of(text: str) -> RuleFileError:
    with pytest.raises(RuleFileError) as caught:
        parse_rules(text, "rules.toml")
    return caught.value


def test_a_good_file_parses_to_its_rules():
    assert parse_rules(GOOD, "rules.toml") == (
        UserRule(
            name="hot-gpu",
            metric="temp_c",
            op=">",
            threshold=85.0,
            for_s=300.0,
            clear=80.0,
            severity="critical",
            hosts=("gpu-node-*",),
            gpus=("0", "GPU-1234*"),
            message="{host} GPU {gpu_index} is at {value} °C",
        ),
        UserRule(name="idle_power", metric="power_w", op="<=", threshold=30.5),
    )


def test_numbers_are_floats_and_gpu_indexes_may_be_integers():
    (rule,) = parse_rules(rule_text("for = 90", "gpus = [0, 3]", "clear = 80"), "rules.toml")

    assert rule.threshold == 85.0 and isinstance(rule.threshold, float)
    assert rule.for_s == 90.0 and isinstance(rule.for_s, float)
    assert rule.clear == 80.0 and isinstance(rule.clear, float)
    assert rule.gpus == ("0", "3")


@pytest.mark.parametrize(
    "text", ["", "\n\n", "# no rules yet\n", "# commented out:\n# [[rule]]\n# name = 'x'\n"]
)
def test_a_file_without_rules_is_valid_and_empty(text):
    assert parse_rules(text, "rules.toml") == ()


def test_the_example_file_parses_as_documented():
    rules = {rule.name: rule for rule in load_rule_file(EXAMPLE)}

    assert sorted(rules) == ["deskside-power", "fan-flat-out", "gpu-memory-nearly-full"]
    memory = rules["gpu-memory-nearly-full"]
    assert (memory.metric, memory.op, memory.threshold) == ("mem_used_bytes", ">", 76 * 2**30)
    assert (memory.for_s, memory.clear) == (600.0, 70 * 2**30)
    power = rules["deskside-power"]
    assert (power.metric, power.threshold, power.hosts) == ("power_w", 400.0, ("lab-ws-01",))
    assert power.severity == "critical"
    fan = rules["fan-flat-out"]
    assert (fan.metric, fan.op, fan.threshold, fan.for_s) == ("fan_pct", ">=", 100.0, 900.0)


# (case id, text, line of the problem, words the problem must hold)
ERRORS = [
    (
        "toml-syntax",
        rule_text("for = ", "severity = 'info'"),
        6,
        ["invalid TOML", "Invalid value", "(column 7)"],
    ),
    ("toml-unclosed-array", rule_text("hosts = [", '  "a",'), 7, ["at the end of the file"]),
    ("toml-redeclared", rule_text("op = '<'"), 6, ["invalid TOML", "Cannot overwrite a value"]),
    (
        "top-level-key",
        'title = "lab"\n' + rule_text(),
        1,
        ["unknown top-level key 'title'", "only [[rule]] tables"],
    ),
    (
        "top-level-table-after-rules",
        rule_text() + "\n[mail]\nto = 'admin'\n",
        7,
        ["unknown top-level key 'mail'"],
    ),
    ("plural-rules", "# mine\n[[rules]]\nname = 'x'\n", 2, ["'rules'", "did you mean 'rule'"]),
    ("single-table", "\n[rule]\n" + "\n".join(BASE) + "\n", 2, ["write each rule as [[rule]]"]),
    (
        "inline-array",
        "rule = [{ name = 'a', metric = 'temp_c', op = '>', threshold = 1 }]\n",
        1,
        ["'rule' must be [[rule]] tables, not an array"],
    ),
    ("rule-is-a-string", '\n\nrule = "x"\n', 3, ["'rule' must be [[rule]] tables, not a string"]),
    (
        "unknown-key",
        rule_text("treshold = 90"),
        6,
        [
            "rule 'r1': unknown key 'treshold'",
            "did you mean 'threshold'?",
            "allowed keys: name, metric, op, threshold, for, clear, severity, hosts, gpus, message",
        ],
    ),
    ("unknown-key-for_s", rule_text("for_s = 60"), 6, ["'for_s'", "did you mean 'for'?"]),
    ("missing-name", rule_text(drop="name"), 1, ["rule #1: missing required key 'name'"]),
    ("missing-metric", rule_text(drop="metric"), 1, ["missing required key 'metric'"]),
    ("missing-op", rule_text(drop="op"), 1, ["missing required key 'op'"]),
    ("missing-threshold", rule_text(drop="threshold"), 1, ["missing required key 'threshold'"]),
    (
        "missing-in-the-second-rule",
        rule_text() + "\n# the next one\n" + rule_text(drop="op", rule_name="r2"),
        8,
        ["rule 'r2': missing required key 'op'"],
    ),
    ("name-not-a-string", rule_text().replace('name = "r1"', "name = 7"), 2, ["must be a string"]),
    (
        "name-with-spaces",
        rule_text(rule_name="Hot GPU"),
        2,
        ["name 'Hot GPU' must be 1 to 64 of a-z, 0-9"],
    ),
    ("name-too-long", rule_text(rule_name="a" * 65), 2, ["must be 1 to 64"]),
    (
        "name-of-a-built-in",
        rule_text(rule_name="temperature"),
        2,
        ["'temperature' is the name of a built-in alert"],
    ),
    (
        "duplicate-name",
        rule_text() + "\n" + rule_text(rule_name="r1"),
        8,
        ["duplicate rule name 'r1' (first on line 2)"],
    ),
    (
        "unknown-metric",
        rule_text().replace('"temp_c"', '"temp"'),
        3,
        ["metric 'temp' is not a known metric", "did you mean 'temp_c'?"],
    ),
    (
        "nvidia-smi-field-as-metric",
        rule_text().replace('"temp_c"', '"power.draw"'),
        3,
        ["did you mean 'power_w'?"],
    ),
    (
        "unlike-any-metric",
        rule_text().replace('"temp_c"', '"zzz"'),
        3,
        ["'zzz' is not a known metric; one of util_gpu_pct, util_mem_pct"],
    ),
    ("unknown-op", rule_text().replace('op = ">"', 'op = "=="'), 4, ["one of >, >=, <, <="]),
    ("op-not-a-string", rule_text().replace('op = ">"', "op = 1"), 4, ["must be a string"]),
    (
        "unknown-severity",
        rule_text('severity = "crit"'),
        6,
        ["severity 'crit' is not allowed", "did you mean 'critical'?"],
    ),
    (
        "threshold-a-string",
        rule_text().replace("threshold = 85", 'threshold = "85"'),
        5,
        ["threshold must be a finite number, not a string ('85')"],
    ),
    (
        "threshold-a-boolean",
        rule_text().replace("threshold = 85", "threshold = true"),
        5,
        ["not a boolean"],
    ),
    ("threshold-nan", rule_text().replace("= 85", "= nan"), 5, ["finite number, not nan"]),
    ("threshold-inf", rule_text().replace("= 85", "= -inf"), 5, ["finite number, not -inf"]),
    ("threshold-huge", rule_text().replace("= 85", "= 1e999"), 5, ["finite number"]),
    ("for-in-words", rule_text('for = "5 minutes"'), 6, ["'5 minutes' is not a duration"]),
    ("for-months", rule_text('for = "5M"'), 6, ["is not a duration"]),
    ("for-no-unit", rule_text('for = "300"'), 6, ["is not a duration"]),
    ("for-units-out-of-order", rule_text('for = "30m1h"'), 6, ["largest first"]),
    ("for-negative", rule_text("for = -5"), 6, ["for -5 seconds is negative"]),
    ("for-too-long", rule_text('for = "31d"'), 6, ["longer than 30 days"]),
    ("for-a-boolean", rule_text("for = true"), 6, ["not a boolean"]),
    ("clear-a-string", rule_text('clear = "80"'), 6, ["clear must be a finite number"]),
    (
        "clear-above-for-greater",
        rule_text("clear = 90"),
        6,
        ["clear = 90 must be at or below threshold = 85 for op '>'"],
    ),
    (
        "clear-below-for-less",
        rule_text("clear = 4.5").replace('op = ">"', 'op = "<="').replace("85", "10"),
        6,
        ["clear = 4.5 must be at or above threshold = 10 for op '<='"],
    ),
    ("hosts-a-string", rule_text('hosts = "gpu-*"'), 6, ["hosts must be an array"]),
    ("hosts-empty-pattern", rule_text('hosts = ["a", ""]'), 6, ["non-empty strings, not ''"]),
    ("gpus-a-boolean", rule_text("gpus = [true]"), 6, ["gpus entries must be GPU indexes"]),
    ("gpus-negative", rule_text("gpus = [-1]"), 6, ["not -1"]),
    ("message-not-a-string", rule_text("message = 3"), 6, ["message must be a string"]),
]


@pytest.mark.parametrize(
    ("text", "line", "words"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS]
)
def test_each_problem_names_the_file_its_line_and_itself(text, line, words):
    problem = problem_of(text)

    assert problem.line == line
    assert str(problem).startswith(f"rules.toml, line {line}: ")
    assert "\n" not in str(problem)
    for word in words:
        assert word in str(problem)


# Each text sets "clear" wrongly (above the threshold of ">") on the one line that holds "99",
# after comments, blank lines, quoted keys, and strings and arrays that span lines and hold text
# that looks like a header or a key ("clear = 1"). The line counts the two lines put before it.
LAYOUTS = [
    (
        "comments-and-blanks",
        11,
        "[[rule]]  # first\n\n# name = 'x'\n"
        + "\n".join(BASE[:2])
        + "\n"
        + "\n".join(BASE[2:])
        + "\n\nclear = 99\n",
    ),
    (
        "multi-line-string-with-a-header-inside",
        12,
        "[[rule]]\n"
        + "\n".join(BASE)
        + '\nmessage = """\n[[rule]]\nclear = 1\n"""\n'
        + "clear = 99\n",
    ),
    (
        "multi-line-literal-with-quotes",
        11,
        "[[rule]]\n" + "\n".join(BASE) + "\nmessage = '''it's\nclear = 1\n''''\nclear = 99\n",
    ),
    (
        "array-over-lines-with-comments",
        12,
        "[[rule]]\n" + "\n".join(BASE) + '\nhosts = [\n  "a", # clear = 1\n  "b",\n]\nclear = 99\n',
    ),
    (
        "quoted-key",
        10,
        "[[rule]]\n" + "\n".join(BASE[:3]) + '\n\n"threshold" = 85\n\n"clear" = 99\n',
    ),
    (
        "spaced-header-and-crlf",
        11,
        ("[[ rule ]]  # r1\n" + "\n".join(BASE) + "\n\n\n\n  clear  =  99  # too high\n").replace(
            "\n", "\r\n"
        ),
    ),
    (
        "the-second-rule-s-own-key",
        14,
        "[[rule]]\n"
        + "\n".join(BASE)
        + "\nclear = 80\n[[rule]]\n"
        + "\n".join(BASE).replace("r1", "r2")
        + "\nclear = 99\n",
    ),
    (
        "escaped-quote-in-string",
        10,
        "[[rule]]\n" + "\n".join(BASE) + '\nmessage = "a \\"[\\" # [[rule]]"\n\nclear = 99\n',
    ),
]


@pytest.mark.parametrize(("line", "text"), [c[1:] for c in LAYOUTS], ids=[c[0] for c in LAYOUTS])
def test_the_line_of_a_key_is_found_whatever_the_layout(line, text):
    text = "# rules\n\n" + text
    problem = problem_of(text)

    assert "99" in text.split("\n")[line - 1]  # the case itself is right
    assert problem.line == line
    assert "clear = 99 must be at or below threshold = 85" in str(problem)


def test_a_key_defined_by_a_sub_table_or_dotted_key_is_found():
    sub_table = problem_of(rule_text() + "\n[rule.hosts]\nfirst = 'a'\n")
    dotted = problem_of(rule_text("", 'message.text = "x"'))

    assert (sub_table.line, "hosts must be an array" in str(sub_table)) == (7, True)
    assert (dotted.line, "message must be a string" in str(dotted)) == (7, True)


def test_the_topmost_problem_of_the_file_is_the_one_named():
    text = rule_text() + rule_text('severity = "loud"', rule_name="r2") + "[mail]\n"

    problem = problem_of(text)

    assert problem.line == 11
    assert "severity 'loud'" in str(problem)


def test_the_problem_of_a_later_rule_names_that_rule_and_its_key_line():
    text = "\n".join([rule_text(), rule_text(rule_name="r2"), rule_text("x = 1", rule_name="r3")])

    problem = problem_of(text)

    assert problem.line == 18
    assert "rule 'r3': unknown key 'x'" in str(problem)


def test_a_good_file_loads_from_disk_and_a_bom_is_allowed(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode("utf-8"))

    assert [rule.name for rule in load_rule_file(path)] == ["hot-gpu", "idle_power"]


def test_a_missing_file_is_one_line_without_a_line_number(tmp_path):
    path = tmp_path / "nowhere.toml"

    with pytest.raises(RuleFileError) as caught:
        load_rule_file(path)

    assert str(caught.value) == f"{path}: cannot read the file: No such file or directory"
    assert caught.value.line is None


def test_a_folder_is_not_a_rule_file(tmp_path):
    with pytest.raises(RuleFileError, match="cannot read the file: Is a directory"):
        load_rule_file(tmp_path)


def test_text_that_is_not_utf8_names_the_line_of_the_bad_byte(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_bytes(rule_text("message = 'caf\xe9'").encode("latin-1"))

    with pytest.raises(RuleFileError) as caught:
        load_rule_file(path)

    assert str(caught.value) == f"{path}, line 6: not UTF-8 text (byte 0xe9)"


def test_a_file_too_big_to_be_rules_is_refused(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_bytes(b"#" * (MAX_FILE_BYTES + 1))

    with pytest.raises(RuleFileError, match="larger than 1048576 bytes"):
        load_rule_file(path)


def test_an_error_inside_the_file_from_disk_names_the_path(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(rule_text('op = "=>"').replace('op = ">"\n', ""), encoding="utf-8")

    with pytest.raises(RuleFileError) as caught:
        load_rule_file(path)

    assert str(caught.value).startswith(f"{path}, line 5: rule 'r1': op '=>' is not allowed")


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1d2h3m4s", 93784.0),
        ("1.5h", 5400.0),
        ("0.1m", 6.0),
        (" 5m ", 300.0),
        ("0s", 0.0),
        (90, 90.0),
        (2.5, 2.5),
        (0, 0.0),
    ],
)
def test_durations_parse_to_seconds(written, seconds):
    assert parse_duration(written) == seconds


@pytest.mark.parametrize("written", ["", "5", "5 m", "5min", "m", "-5m", "5m30", "1m1m", True])
def test_durations_that_are_none_are_refused(written):
    with pytest.raises(ValueError):
        parse_duration(written)


@pytest.mark.parametrize(
    ("seconds", "written"),
    [(0, "0s"), (45, "45s"), (300, "5m"), (5400, "1h30m"), (86400, "1d"), (90061, "1d1h1m1s")],
)
def test_durations_are_written_as_the_file_writes_them(seconds, written):
    assert format_duration(seconds) == written
    assert format_duration(2.5) == "2.5s"


@given(st.integers(min_value=0, max_value=30 * 86400))
def test_a_written_duration_reads_back_as_its_seconds(seconds):
    assert parse_duration(format_duration(seconds)) == seconds


def test_matches_host_patterns_gpu_indexes_and_uuid_patterns():
    rule = UserRule(
        "r", "temp_c", ">", 85, hosts=("gpu-node-*", "lab-ws-01"), gpus=("0", "GPU-AB12*")
    )

    assert rule.matches("gpu-node-07", 0, "GPU-ffff")
    assert rule.matches("GPU-NODE-07", 5, "GPU-ab12cd34")  # names and hex digits in any case
    assert rule.matches("lab-ws-01", 2, "GPU-AB120000")
    assert not rule.matches("lab-ws-02", 0, "GPU-ffff")  # host not listed
    assert not rule.matches("gpu-node-07", 1, "GPU-ffff")  # neither index 0 nor the UUID
    assert not rule.matches("gpu-node-07", 10, "GPU-ffff")  # "0" is index 0, not a prefix


def test_a_rule_without_hosts_or_gpus_matches_every_gpu():
    rule = UserRule("r", "temp_c", ">", 85)

    assert rule.matches("anything", 7, "GPU-0")
    assert rule.matches("", 0, "")


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        (">", 86, True),
        (">", 85, False),
        (">=", 85, True),
        (">=", 84.9, False),
        ("<", 84.9, True),
        ("<", 85, False),
        ("<=", 85, True),
        ("<=", 85.1, False),
        (">", math.nan, False),
        ("<", math.nan, False),
    ],
)
def test_condition_compares_the_value_with_the_threshold(op, value, expected):
    assert UserRule("r", "temp_c", op, 85).condition(value) is expected


@pytest.mark.parametrize(
    ("op", "clear", "value", "expected"),
    [
        (">", None, 85, True),  # no clear: resolved as soon as the condition is false
        (">", None, 86, False),
        (">", 80, 82, False),  # below the threshold but not yet below clear
        (">", 80, 80, False),
        (">", 80, 79.9, True),
        (">=", 85, 84, True),
        ("<", 20, 15, False),
        ("<", 20, 20.1, True),
        ("<=", None, 10, False),
        ("<=", None, 10.5, True),
        (">", 80, math.nan, False),  # an unknown value resolves nothing
        (">", None, math.nan, False),
    ],
)
def test_cleared_waits_for_the_value_to_be_back_past_clear(op, clear, value, expected):
    threshold = 85 if op.startswith(">") else 10
    rule = UserRule("r", "temp_c", op, threshold, clear=clear)

    assert rule.cleared(value) is expected


FIELDS = {
    "host": "gpu-node-07",
    "gpu_index": 3,
    "gpu_uuid": "GPU-ab12",
    "gpu_name": "NVIDIA A100-SXM4-80GB",
    "value": 87.0000001,
    "threshold": 85.0,
    "metric": "temp_c",
    "op": ">",
    "rule": "hot-gpu",
    "for": "5m",
    "severity": "critical",
}


def test_render_fills_every_known_name():
    template = " ".join(f"{{{name}}}" for name in PLACEHOLDERS)
    rule = UserRule("hot-gpu", "temp_c", ">", 85, message=template)

    assert rule.render(**FIELDS) == (
        "gpu-node-07 3 GPU-ab12 NVIDIA A100-SXM4-80GB 87 85 temp_c > hot-gpu 5m critical"
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [(87, "87"), (87.0, "87"), (87.5, "87.5"), (87.0000001, "87"), (350.126, "350.13")],
)
def test_render_shows_numbers_compactly(value, shown):
    rule = UserRule("r", "power_w", ">", 85, message="now {value} W")

    assert rule.render(value=value) == f"now {shown} W"


def test_render_shows_seconds_given_for_for_as_a_duration():
    rule = UserRule("r", "temp_c", ">", 85, for_s=300, message="for {for}")

    assert rule.render(**{"for": 300}) == "for 5m"


@pytest.mark.parametrize(
    "template",
    [
        "{value.__class__}",
        "{value.__class__.__mro__}",
        "{host[0]}",
        "{host.__len__}",
        "{value:>10}",
        "{value!r}",
        "{0}",
        "{}",
        "{__import__}",
        "{hostname}",
        "{ host }",
    ],
)
def test_render_leaves_anything_but_a_known_name_as_written(template):
    rule = UserRule("r", "temp_c", ">", 85, message=f"x {template} y {{host}}")

    assert rule.render(**FIELDS) == f"x {template} y gpu-node-07"


def test_render_fills_only_the_fields_given():
    rule = UserRule("r", "temp_c", ">", 85, message="{host} {value} {gpu_name}")

    assert rule.render(host="n1", unknown="z") == "n1 {value} {gpu_name}"


def test_the_default_message_names_metric_threshold_gpu_and_value():
    held = UserRule("hot-gpu", "temp_c", ">", 85, for_s=300)
    at_once = UserRule("hot-gpu", "temp_c", ">", 85)

    assert held.render(**FIELDS) == (
        "temp_c > 85 for 5m on gpu-node-07 GPU 3 (NVIDIA A100-SXM4-80GB): now 87"
    )
    assert at_once.render(**FIELDS) == (
        "temp_c > 85 on gpu-node-07 GPU 3 (NVIDIA A100-SXM4-80GB): now 87"
    )


@given(st.text(min_size=1))
def test_render_without_fields_returns_the_template_as_written(template):
    assert UserRule("r", "temp_c", ">", 85, message=template).render() == template


@given(
    st.text(alphabet=st.sampled_from("{}[].:!_ahostvlue0"), min_size=1),
    st.one_of(st.floats(), st.integers(), st.text(), st.booleans(), st.none()),
)
def test_render_never_raises_and_fills_only_whole_placeholders(template, value):
    rendered = UserRule("r", "temp_c", ">", 85, message=template).render(host=value, value=value)

    assert isinstance(rendered, str)
    if "{host}" not in template and "{value}" not in template:
        assert rendered == template


def test_a_built_in_alert_s_name_is_refused_for_each_built_in():
    for name in BUILT_IN_NAMES:
        assert "built-in alert" in str(problem_of(rule_text(rule_name=name)))


@pytest.mark.parametrize(
    "extra",
    [
        "threshold = " + "9" * 5000,  # past Python's digit limit: tomllib raises ValueError
        'threshold = 1\ngpus = ["' + "9" * 5000 + '"]',  # an index no GPU has, nor int() takes
    ],
)
def test_an_absurd_number_is_a_rule_file_error_not_a_crash(extra):
    text = f'[[rule]]\nname = "a"\nmetric = "temp_c"\nop = ">"\n{extra}\n'

    with pytest.raises(RuleFileError) as caught:
        parse_rules(text, "rules.toml")

    assert str(caught.value).startswith("rules.toml")
