"""Conda envs and run profiles, checked without conda or a cluster.

- Every rule that runs a job names a ``conda:`` env under ``envs/`` that parses, with channels
  conda-forge + nodefaults and a dependency list; every env file is used by a rule.
- An env pins each package that pyproject.toml pins to pyproject's range (``SAME_PACKAGE``
  says which names are one package).
- Each env holds the packages its rules' scripts import at module level, followed through
  ``szmass``; and the scripts reach this checkout's ``src/szmass`` through
  ``workflow/scripts/_bootstrap.py`` (szmass is not installed in the envs).
- profiles/default and profiles/slurm name only rules that exist (or ``PLANNED_RULES``), give
  the network rules one GPU, and a dry run with profiles/slurm shows its resources on every job
  of the paper's DAG. That dry run uses snakemake-executor-plugin-slurm when it is installed;
  without it, ``--executor local`` stands in (the resources a dry run prints are the same).

The rules are read with the Snakemake API in a child process (``Workflow.rules``; Snakemake's
API has no public rule listing, so this uses ``WorkflowApi._workflow``, pinned by
``snakemake>=9.27,<10``).
"""

import ast
import functools
import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from . import smk

REPO = smk.REPO
ENVS = sorted((REPO / "envs").glob("*.yaml"))
SCRIPTS = REPO / "workflow" / "scripts"
PROFILES = {name: REPO / "profiles" / name / "config.yaml" for name in ("default", "slurm")}

#: Distributions that are one package for pinning (canonical names). pyproject's extras install
#: TensorFlow as ``tensorflow-cpu`` ("cpu") or ``tensorflow[and-cuda]`` ("gpu"), conda-forge
#: calls it ``tensorflow``: an env may use any of them, with pyproject's single range.
SAME_PACKAGE = {"tensorflow-cpu": "tensorflow"}

#: Rules a profile may size before they exist (Snakemake silently ignores set-resources for
#: unknown rules, so every other name must be a rule: a typo would size nothing). Remove a
#: name once its rule lands.
PLANNED_RULES: set[str] = set()

#: Prints each rule's conda env, script and rule file, as JSON, from a child process.
LIST_RULES = """
import json
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import OutputSettings, ResourceSettings

with SnakemakeApi(OutputSettings()) as api:
    workflow = api.workflow(
        resource_settings=ResourceSettings(cores=1), snakefile=Path("Snakefile"), workdir=Path(".")
    )._workflow
    rules = {
        rule.name: {
            "runs_job": not rule.norun,
            "basedir": str(rule.basedir),
            "conda": rule.conda_env if rule.conda_env is None else str(rule.conda_env),
            "conda_is_path": rule.conda_env is None or isinstance(rule.conda_env, str),
            "script": rule.script,
        }
        for rule in workflow.rules
    }
print("RULES=" + json.dumps(rules))
"""


def canonical(name: str) -> str:
    name = canonicalize_name(name)
    return SAME_PACKAGE.get(name, name)


@pytest.fixture(scope="module")
def rules(tmp_path_factory) -> dict[str, dict]:
    """name -> {runs_job, conda (a path in REPO or None), script (a path in REPO or None)}."""
    copy = smk.copy_workflow(tmp_path_factory.mktemp("envs") / "wf")
    proc = subprocess.run(
        [sys.executable, "-c", LIST_RULES],
        cwd=copy,
        env=smk.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r"^RULES=(.*)$", proc.stdout, re.M)
    assert proc.returncode == 0 and found, proc.stdout + proc.stderr
    rules = json.loads(found.group(1))
    for info in rules.values():  # paths in the copy -> the same paths in this checkout
        base = Path(info.pop("basedir"))
        for key in ("conda", "script"):
            if info[key] is not None and (key == "script" or info["conda_is_path"]):
                path = (base / info[key]).resolve()
                info[key] = REPO / path.relative_to(copy.resolve())
    return rules


@pytest.fixture(scope="module")
def job_rules(rules) -> dict[str, dict]:
    """The rules that run a job (not ``all``)."""
    return {name: info for name, info in rules.items() if info["runs_job"]}


def read_env(path: Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def env_requirements(env: dict) -> list[tuple[str, SpecifierSet, str]]:
    """(canonical name, version range, the entry as written) for every conda and pip entry."""
    found = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for entry in dep.get("pip", []):
                req = Requirement(entry)
                found.append((canonical(req.name), req.specifier, f"pip: {entry}"))
            continue
        m = re.fullmatch(r"(?:[\w.-]+::)?([\w.-]+)(?:\[[^\]]*\])?\s*(.*)", dep.strip())
        assert m, f"cannot read the conda entry {dep!r}"
        name, version = m.group(1), re.sub(r",\s+", ",", m.group(2)).split(" ")[0]
        # conda's "=2.4" and "pkg 2.4" mean 2.4.*; ">=2.4,<3" reads as in pip.
        if re.fullmatch(r"=?[\d.]+", version):
            version = f"=={version.lstrip('=')}.*"
        assert "|" not in version, f"{dep!r}: alternatives are not checked here"
        found.append((canonical(name), SpecifierSet(version), dep))
    return found


def pyproject_pins() -> dict[str, dict[str, SpecifierSet]]:
    """canonical name -> {where in pyproject.toml: range}, python included."""
    with open(REPO / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    pins: dict[str, dict[str, SpecifierSet]] = {
        "python": {"requires-python": SpecifierSet(project["requires-python"])}
    }
    groups = {"dependencies": project["dependencies"]}
    groups.update({f"[{k}]": v for k, v in project.get("optional-dependencies", {}).items()})
    for group, entries in groups.items():
        for entry in entries:
            req = Requirement(entry)
            pins.setdefault(canonical(req.name), {})[f"{group} {entry}"] = req.specifier
    return pins


# -- conda envs ------------------------------------------------------------------------------


def test_every_job_rule_has_a_conda_env(job_rules):
    for name, info in job_rules.items():
        assert info["conda_is_path"], f"rule {name}: conda: must be a path to an env file"
        env = info["conda"]
        assert env is not None, f"rule {name} has no conda: env"
        assert env.parent == REPO / "envs", f"rule {name}: {env} is not in envs/"
        assert env.is_file(), f"rule {name}: {env} does not exist"


def test_every_env_is_used(job_rules):
    used = {info["conda"] for info in job_rules.values()}
    assert set(ENVS) <= used, f"env files no rule uses: {sorted(set(ENVS) - used)}"


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_env_is_well_formed(path):
    env = read_env(path)
    assert env["channels"] == ["conda-forge", "nodefaults"], path.name
    deps = env["dependencies"]
    assert isinstance(deps, list) and deps, f"{path.name}: no dependency list"
    pip = [d for d in deps if isinstance(d, dict)]
    assert all(isinstance(d, str) for d in deps if not isinstance(d, dict)), path.name
    if pip:
        assert len(pip) == 1 and list(pip[0]) == ["pip"], f"{path.name}: one pip: section"
        assert all(isinstance(e, str) for e in pip[0]["pip"]), path.name
        assert "pip" in deps, f"{path.name}: a pip: section needs pip itself in the env"
    names = [name for name, _, _ in env_requirements(env)]
    assert "python" in names, f"{path.name}: python is not pinned"
    assert len(names) == len(set(names)), f"{path.name}: a package is listed twice: {names}"


@pytest.mark.parametrize("path", ENVS, ids=lambda p: p.name)
def test_env_pins_agree_with_pyproject(path):
    pins = pyproject_pins()
    wrong = []
    for name, spec, entry in env_requirements(read_env(path)):
        for where, pinned in pins.get(name, {}).items():
            if spec != pinned:
                wrong.append(f"{entry!r} but pyproject.toml {where}")
    assert not wrong, f"{path.name}:\n  " + "\n  ".join(wrong)


# -- what the rule scripts import ------------------------------------------------------------


def _module_file(module: str) -> Path | None:
    """The file of a ``szmass`` module in src/, or None (an attribute, not a module)."""
    parts = module.split(".")
    base = REPO / "src" / Path(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_level_imports(path: Path, package: str | None) -> set[str]:
    """Modules a file imports when it is imported or run: every import outside function
    bodies (class bodies and ``if``/``try`` blocks included). ``package`` resolves relative
    imports; ``from pkg import name`` also yields ``pkg.name`` when that is a module."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    assert package, f"{path}: relative import outside a package"
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1])
                    module = f"{base}.{child.module}" if child.module else base
                else:
                    module = child.module
                found.add(module)
                for alias in child.names:
                    if _module_file(f"{module}.{alias.name}"):
                        found.add(f"{module}.{alias.name}")
            visit(child)

    visit(ast.parse(path.read_text(), filename=str(path)))
    return found


def third_party_imports(script: Path) -> dict[str, str]:
    """Top-level third-party modules a rule script needs at import time, through szmass:
    module -> the chain of imports that pulls it in."""
    needed: dict[str, str] = {}
    todo = [(script, None, script.name)]
    seen: set[Path] = set()
    while todo:
        path, package, chain = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in sorted(module_level_imports(path, package)):
            top = module.split(".")[0]
            if top == "szmass":
                for i in range(1, len(module.split(".")) + 1):  # szmass, szmass.a, ...
                    sub = ".".join(module.split(".")[:i])
                    file = _module_file(sub)
                    if file:
                        pkg = sub if file.name == "__init__.py" else sub.rpartition(".")[0]
                        todo.append((file, pkg, f"{chain} -> {sub}"))
            elif top not in sys.stdlib_module_names and top != "_bootstrap":
                needed.setdefault(top, f"{chain} -> {module}")
    return needed


@functools.cache
def _packages_distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distributions(module: str) -> set[str]:
    """Canonical distribution names that provide a top-level module (as installed here; a
    module not installed here is taken as its own distribution name)."""
    dists = _packages_distributions().get(module, [module])
    return {canonical(d) for d in dists}


def test_envs_hold_what_the_scripts_import(job_rules):
    missing = []
    for name, info in sorted(job_rules.items()):
        if info["script"] is None or info["conda"] is None:
            continue
        have = {pkg for pkg, _, _ in env_requirements(read_env(info["conda"]))}
        for module, chain in third_party_imports(info["script"]).items():
            if not distributions(module) & have:
                missing.append(f"{name} ({info['conda'].name}): {module}, via {chain}")
    assert not missing, "rule envs lack modules their scripts import:\n  " + "\n  ".join(missing)


def test_rule_scripts_bootstrap_before_szmass(job_rules):
    for name, info in job_rules.items():
        script = info["script"]
        if script is None:
            continue
        assert script.parent == SCRIPTS, f"rule {name}: {script} is not beside _bootstrap.py"
        first: dict[str, int] = {}  # top-level module -> line of its first import
        for node in ast.parse(script.read_text()).body:
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                first.setdefault(module.split(".")[0], node.lineno)
        if "szmass" in first:
            assert first.get("_bootstrap", 10**9) < first["szmass"], (
                f"rule {name}: {script.name} imports szmass before _bootstrap"
            )


def test_bootstrap_puts_this_checkouts_src_first(tmp_path):
    """In an interpreter without site-packages (-I -S, so no installed szmass) and another
    directory, running _bootstrap makes ``import szmass.config`` load this checkout's."""
    code = (
        "import runpy, sys\n"
        f"runpy.run_path({str(SCRIPTS / '_bootstrap.py')!r})\n"
        "import szmass.config\n"
        "print(sys.path[0]); print(szmass.config.__file__)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    first, module_file = proc.stdout.split()
    assert Path(first) == REPO / "src"
    assert Path(module_file) == REPO / "src" / "szmass" / "config.py"


# -- profiles --------------------------------------------------------------------------------


def read_profile(name: str) -> dict:
    with open(PROFILES[name]) as f:
        return yaml.safe_load(f)


def gpu_rules(job_rules) -> set[str]:
    """Rules whose env has TensorFlow: the network's training and predictions."""
    return {
        name
        for name, info in job_rules.items()
        if info["conda"]
        and "tensorflow" in {n for n, _, _ in env_requirements(read_env(info["conda"]))}
    }


@pytest.mark.parametrize("profile", list(PROFILES))
def test_profile_names_only_rules_that_exist(profile, rules):
    config = read_profile(profile)
    for key in ("set-resources", "set-threads"):
        unknown = set(config.get(key) or {}) - set(rules) - PLANNED_RULES
        assert not unknown, f"profiles/{profile} {key}: no such rules {sorted(unknown)}"


@pytest.mark.parametrize("profile", list(PROFILES))
def test_network_rules_get_one_gpu(profile, job_rules):
    config = read_profile(profile)
    resources = config.get("set-resources") or {}
    gpus = gpu_rules(job_rules)
    assert gpus >= {"train_model"}
    for name in job_rules:
        given = resources.get(name, {})
        if name in gpus:
            assert given.get("gpu") == 1, f"profiles/{profile}: {name} should get gpu: 1"
        else:
            assert not {"gpu", "gres", "gpu_model"} & set(given), (
                f"profiles/{profile}: {name} is a CPU rule but asks for a GPU"
            )


def test_slurm_profile_sizes_every_rule(job_rules):
    config = read_profile("slurm")
    for key in ("slurm_account", "slurm_partition", "mem_mb", "runtime"):
        assert key in config["default-resources"], key
    resources = config["set-resources"]
    for name in job_rules:
        assert {"mem_mb", "runtime"} <= set(resources.get(name, {})), (
            f"profiles/slurm: size {name} (mem_mb, runtime) in set-resources"
        )
        if name in gpu_rules(job_rules):
            partition = resources[name].get("slurm_partition")
            assert partition and partition != config["default-resources"]["slurm_partition"]


def _minutes(runtime) -> int:
    m = re.fullmatch(r"(\d+)\s*([mhd]?)", str(runtime).strip())
    assert m, f"runtime {runtime!r}: write minutes, or e.g. '30m', '8h', '2d'"
    return int(m.group(1)) * {"": 1, "m": 1, "h": 60, "d": 1440}[m.group(2)]


def dry_run_jobs(output: str) -> list[tuple[str, dict[str, str], int]]:
    """(rule, resources as printed, threads) for each job block of a dry run."""
    jobs = []
    for block in re.split(r"\n(?=rule \w+:)", output):
        m = re.search(r"^rule (\w+):", block, re.M)
        if not m:
            continue
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        threads = re.search(r"^\s+threads: (\d+)$", block, re.M)
        printed = dict(item.split("=", 1) for item in res.group(1).split(", ")) if res else {}
        jobs.append((m.group(1), printed, int(threads.group(1)) if threads else 1))
    return jobs


def test_slurm_dry_run_shows_its_resources(workflow_copy, tmp_path, job_rules):
    """``snakemake -n --workflow-profile profiles/slurm`` on the paper config: every job
    carries the profile's account, partition, memory, time limit and GPU. use-conda is left
    out (no conda on these machines). The plugin is in the test extra: the profile's
    slurm-* keys are its options."""
    config = read_profile("slurm")
    assert config["use-conda"] is True
    profile = tmp_path / "slurm"
    profile.mkdir()
    (profile / "config.yaml").write_text(
        yaml.safe_dump({k: v for k, v in config.items() if k != "use-conda"}, sort_keys=False)
    )
    # rule all with one predict target, the survey-like test map (its rule is not in rule all),
    # and a redshift distribution (Figure 9, plot_redshift, is drawn only then)
    target = {"name": "testmap", "map": "results/survey/testmap.fits", "weights": None}
    target |= {"catalogue": "results/survey/testmap_truth.csv", "beam_fwhm_arcmin": None}
    overlay = tmp_path / "predict.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "predict": {"resample": "shift", "targets": [target | {"unit": None}]},
                "cluster": {"redshift": {"distribution": "uniform", "range": [0.2, 1.5]}},
            }
        )
    )
    args = ["-n", "--configfile", "config/config.yaml", str(overlay)]
    args += ["--workflow-profile", str(profile)]
    proc = smk.run(workflow_copy, *args)
    assert proc.returncode == 0, proc.stdout

    jobs = dry_run_jobs(proc.stdout)
    assert {rule for rule, _, _ in jobs} >= set(job_rules), proc.stdout
    for rule, printed, threads in jobs:
        if rule not in job_rules:
            continue
        want = {**config["default-resources"], **config["set-resources"].get(rule, {})}
        for key, value in want.items():
            expected = _minutes(value) if key == "runtime" else value
            assert printed.get(key) == str(expected), f"{rule}: {key}={printed.get(key)}"
        if rule in gpu_rules(job_rules):
            assert threads == config["cores"], f"{rule}: {threads} threads"
