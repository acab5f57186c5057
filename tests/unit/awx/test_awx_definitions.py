"""AWX as code (awx/) agrees with the playbooks and the roles: every survey question is an extra var its
playbook documents (the -e name=... of its header) or an option of a role's argument specification, every
documented extra var of a playbook is a question, every input a playbook needs is a required question, a
credential's injector or a variable of the inventory, and the credential types inject exactly variables the
collection reads. The execution environment carries the libraries the modules import."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
AWX = REPO / "awx"
TEMPLATES = yaml.safe_load((AWX / "job_templates.yml").read_text())
JOB_TEMPLATES = TEMPLATES["job_templates"]
TYPES = yaml.safe_load((AWX / "credential_types.yml").read_text())["credential_types"]
# The entry points a person launches (the top-level playbooks); init.yml writes an inventory on a workstation.
ENTRY_POINTS = sorted(p.stem for p in REPO.glob("*.yml") if "import_playbook: playbooks/" in p.read_text())
NOT_IN_AWX = {"init"}
EXTRA_VAR = re.compile(r"""-e\s+['"]?([a-z_][a-z0-9_]*)=""")
SURVEY_TYPES = {"text", "textarea", "password", "integer", "float", "multiplechoice", "multiselect"}


def header(playbook: str) -> list[str]:
    """The comment lines at the head of playbooks/<playbook>.yml: its documentation."""
    lines = []
    for line in (REPO / "playbooks" / f"{playbook}.yml").read_text().splitlines():
        if line.startswith("#"):
            lines.append(line)
        elif line.strip() not in ("", "---"):
            break
    return lines


def documented(playbook: str) -> set[str]:
    """The extra vars a playbook documents in its header."""
    return {name for line in header(playbook) for name in EXTRA_VAR.findall(line)}


def imported(playbook: str) -> list[str]:
    """The entry points a playbook runs through (rollback.yml imports deploy.yml)."""
    text = (REPO / "playbooks" / f"{playbook}.yml").read_text()
    return [name for name in re.findall(r"import_playbook:\s*(\w+)\.yml", text) if name in ENTRY_POINTS]


def required_extra_vars(playbook: str) -> set[str]:
    """The extra vars every command of the header passes: those the playbook cannot run without."""
    commands = [set(EXTRA_VAR.findall(line)) for line in header(playbook) if "ansible-playbook" in line]
    return set.intersection(*commands) if commands else set()


def role_options() -> dict[str, dict]:
    """Every option of every entry point of every role's argument specification."""
    options: dict[str, dict] = {}
    for path in sorted(REPO.glob("roles/*/meta/argument_specs.yml")):
        for entry in yaml.safe_load(path.read_text())["argument_specs"].values():
            options.update(entry.get("options") or {})
    return options


def required_role_options() -> set[str]:
    """What the roles require of every run: the required options of their main entry points."""
    required = set()
    for path in sorted(REPO.glob("roles/*/meta/argument_specs.yml")):
        options = yaml.safe_load(path.read_text())["argument_specs"]["main"].get("options") or {}
        required |= {name for name, spec in options.items() if spec.get("required")}
    return required


def injected() -> set[str]:
    return {name for kind in TYPES for name in kind["injectors"].get("extra_vars", {})}


def survey_of(template: dict) -> dict[str, dict]:
    return {question["variable"]: question for question in template["survey"]}


TEMPLATE_IDS = [t["name"] for t in JOB_TEMPLATES]


def test_one_template_per_entry_point_a_person_launches():
    templates = {Path(t["playbook"]).stem for t in JOB_TEMPLATES}
    missing, extra = set(ENTRY_POINTS) - NOT_IN_AWX - templates, templates - set(ENTRY_POINTS)
    assert not missing, (
        f"{sorted(missing)}: a playbook a person launches gets a job template in awx/job_templates.yml, its "
        "survey one question per -e name=... of its header (or goes in NOT_IN_AWX here, with the reason)"
    )
    assert not extra, f"{sorted(extra)}: job templates of no entry point"
    for template in JOB_TEMPLATES:
        assert (REPO / template["playbook"]).is_file(), template["playbook"]
        assert template["name"] == Path(template["playbook"]).stem


@pytest.mark.parametrize("template", JOB_TEMPLATES, ids=TEMPLATE_IDS)
def test_every_survey_question_is_a_documented_input(template):
    playbook = Path(template["playbook"]).stem
    allowed = documented(playbook) | {name for other in imported(playbook) for name in documented(other)}
    options = role_options()
    for variable in survey_of(template):
        assert variable in allowed or variable in options, (
            f"{template['name']}: {variable} is neither an extra var playbooks/{playbook}.yml documents "
            f"(-e {variable}=... in its header) nor an option of a role"
        )
        assert variable not in injected(), f"{variable} comes from a credential, not from a survey"


@pytest.mark.parametrize("template", JOB_TEMPLATES, ids=TEMPLATE_IDS)
def test_every_documented_extra_var_is_a_question(template):
    playbook = Path(template["playbook"]).stem
    missing = documented(playbook) - set(survey_of(template))
    assert not missing, f"{template['name']}: no survey question for {sorted(missing)}"


@pytest.mark.parametrize("template", JOB_TEMPLATES, ids=TEMPLATE_IDS)
def test_every_required_input_is_asked_injected_or_in_the_inventory(template):
    playbook = Path(template["playbook"]).stem
    survey = survey_of(template)
    for variable in required_extra_vars(playbook):
        assert variable in survey and survey[variable]["required"], f"{template['name']}: {variable} must be asked"
    provided = set(survey) | injected() | set(TEMPLATES["inventory_variables"])
    missing = required_role_options() - provided
    assert not missing, f"{template['name']}: nothing provides {sorted(missing)}"


def test_the_inventory_variables_are_the_required_options_an_inventory_holds():
    assert set(TEMPLATES["inventory_variables"]) == required_role_options()
    example = {}
    for path in (REPO / "inventories" / "examples" / "flight_hunter").glob("group_vars/*/stack.yml"):
        example.update(yaml.safe_load(path.read_text()) or {})
    assert set(TEMPLATES["inventory_variables"]) <= set(example)


@pytest.mark.parametrize("template", JOB_TEMPLATES, ids=TEMPLATE_IDS)
def test_the_surveys_are_valid_awx_surveys(template):
    for question in template["survey"]:
        assert set(question) <= {"variable", "question_name", "question_description", "type", "required",
                                 "default", "choices", "min", "max"}, question  # fmt: skip
        assert question["type"] in SURVEY_TYPES and isinstance(question["required"], bool)
        assert question["question_name"] and question["question_description"]
        if question["type"] == "multiplechoice":
            assert all(isinstance(choice, str) for choice in question["choices"])
            assert question.get("default") in question["choices"], question["variable"]
        if not question["required"]:
            # An unanswered optional question passes nothing: the playbook's default applies.
            assert "default" not in question, question["variable"]
        assert question.get("default") != "", question["variable"]


def stats_keys() -> set[str]:
    """The names the playbooks return with set_stats (their data's top-level keys)."""
    keys = set()
    for path in (REPO / "playbooks").rglob("*.yml"):
        text = path.read_text()
        for block in re.finditer(r"set_stats:\n(\s+)data:\n((?:\1\s+.*\n)+)", text):
            indent = len(block.group(1)) + 2
            keys |= set(re.findall(rf"^\s{{{indent}}}(\w+):", block.group(2), re.M))
    return keys


def test_what_a_template_returns_is_what_its_playbook_reports():
    returned = stats_keys()
    assert {"pydeploy_release", "pydeploy_backup", "pydeploy_restore", "pydeploy_status", "run_rc"} <= returned
    for template in JOB_TEMPLATES:
        if "returns" in template:
            assert template["returns"] in returned, template["name"]


def test_the_credential_types_inject_exactly_what_the_collection_reads():
    options = role_options()
    init_template = (REPO / "playbooks" / "templates" / "init" / "stack.yml.j2").read_text()
    s3_keys = set(options["stack_backup"]["options"]["s3"]["options"])
    for kind in TYPES:
        fields = {field["id"] for field in kind["inputs"]["fields"]}
        assert set(kind["inputs"].get("required", [])) <= fields
        assert kind["kind"] in ("cloud", "net")
        injectors = kind["injectors"]
        for name, template in injectors.get("extra_vars", {}).items():
            # A role's option, or a variable the stack description's s3 keys name (as init.yml writes them).
            s3_key = rf"^[#\s]*({'|'.join(s3_keys)}): \"{{% raw %}}{{{{ {name} }}}}"
            named_by_s3 = re.search(s3_key, init_template, re.M)
            assert name in options or named_by_s3, f"{kind['name']}: nothing reads {name}"
            used = set(re.findall(r"{{\s*(\w+)\s*}}", template))
            assert used <= fields, f"{kind['name']}: {name} renders {used - fields}"
        for name in injectors.get("env", {}):
            assert not name.startswith("ANSIBLE_"), f"AWX refuses {name} in a credential type"
        for field in kind["inputs"]["fields"]:
            if re.search("password|secret|token", field["id"]):
                assert field.get("secret"), f"{kind['name']}: {field['id']} is a secret"
    registry = next(kind for kind in TYPES if "registry" in kind["name"])
    assert set(registry["injectors"]["extra_vars"]) == {n for n in options if n.startswith("docker_host_registry")}


def test_the_vault_password_client_reads_what_the_vault_type_injects():
    vault = next(kind for kind in TYPES if "vault" in kind["name"])
    (variable,) = vault["injectors"]["env"]
    client = (AWX / "ee" / "bin" / "pydeploy-vault-password").read_text()
    assert f"${{{variable}" in client or f"${variable}" in client
    definition = (REPO / "execution-environment.yml").read_text()
    assert "ANSIBLE_VAULT_PASSWORD_FILE=/usr/local/bin/pydeploy-vault-password" in definition


# The import names of the third-party libraries, and the distributions that carry them.
DISTRIBUTIONS = {"docker": "docker", "requests": "requests", "boto3": "boto3", "botocore": "boto3",
                 "psycopg": "psycopg", "redis": "redis", "pymongo": "pymongo", "zstandard": "zstandard"}  # fmt: skip
STANDARD = {"ansible", "ansible_collections", "yaml", "__future__"}


def third_party_imports() -> set[str]:
    found = set()
    for path in [*REPO.glob("plugins/modules/*.py"), *REPO.glob("plugins/module_utils/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in STANDARD and top not in sys.stdlib_module_names:
                    found.add(top)
    return found


def requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[\[<>=!~ ]", line, maxsplit=1)[0].lower())
    return names


def test_the_execution_environment_carries_what_the_modules_import():
    imports = third_party_imports()
    assert imports <= set(DISTRIBUTIONS), f"a library the modules import is not known here: {imports}"
    needed = {DISTRIBUTIONS[name] for name in imports}
    declared = requirement_names(REPO / "meta" / "ee-requirements.txt")
    assert declared == needed, "meta/ee-requirements.txt lists what plugins/modules and module_utils import"
    pinned = requirement_names(AWX / "ee" / "requirements.txt")
    assert needed <= pinned, f"awx/ee/requirements.txt does not pin {needed - pinned}"
    definition = yaml.safe_load((REPO / "execution-environment.yml").read_text())
    assert definition["dependencies"]["python"] == "awx/ee/requirements.txt"
    assert definition["dependencies"]["system"] == "meta/ee-bindep.txt"


def awx_configure(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "playbooks/awx_configure.yml", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"},
        timeout=120,
    )


def test_awx_configure_passes_the_syntax_check():
    result = awx_configure("--syntax-check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_awx_configure_names_every_missing_input_before_asking_the_controller():
    result = awx_configure("-e", "awx_controller_host=https://127.0.0.1:9", "-e", "awx_organization=Acme")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "missing: awx_controller_token, awx_ee_image, awx_project_scm_url, awx_inventory." in output
    assert "Create the credential types" not in output, "nothing is sent to the controller"
