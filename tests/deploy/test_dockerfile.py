"""The Dockerfile builds with the scripts CI and developers run, and its runtime stage holds only
what keygate needs (issue 7, item 4).

- The build stage runs scripts/deps.sh build and scripts/build: the files scripts/test (CI,
  through .ci/run) and scripts/run call, not a copy of their commands.
- The runtime stage installs a Debian package for every shared library `ldd` lists for the
  built keygate (KEYGATE_BIN; mapped with `dpkg -S`), and no package beyond those and
  ca-certificates.
- Non-root numeric USER, /tmp a volume, the ports and the entrypoint the manifests use.
- No credential is copied into the image, and .dockerignore keeps them out of the context.
- dockerfilelint (npm, from the lockfile in tests/deploy/tools/) reports nothing.

There is no Docker engine on the development and CI machines, so the image itself is not built
here; these checks cover what can be checked without one.

    KEYGATE_BIN=build/proxy/keygate /usr/bin/python3 -B tests/deploy/test_dockerfile.py
"""

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy_common as dc  # noqa: E402

# Libraries debian:12-slim already has (Essential / required packages), and the sanitizer
# runtimes of an ASan/UBSan test build (a Release build has none).
BASE_IMAGE_LIBS = re.compile(
    r"^(linux-vdso|linux-gate|ld-linux[-\w.]*|libc|libm|libdl|libpthread|librt|libresolv|"
    r"libstdc\+\+|libgcc_s|libasan|libubsan|liblsan|libtsan)\.so")
BASE_IMAGE_PACKAGES = {"libc6", "libstdc++6", "libgcc-s1", "libasan8", "libubsan1"}
# Packages the runtime stage may install beyond keygate's libraries, and why.
RUNTIME_EXTRAS = {
    "ca-certificates": "the CA bundle for TLS to Redis when upstream.tls.caFile is not set",
}
SECRET_NAME = re.compile(
    r"(^|/)(\.env|id_rsa[^/]*|[^/]*\.(pem|key|crt|p12|pfx|token)|passwords\.yaml)$",
    re.IGNORECASE)


def parse_dockerfile(text):
    """[(instruction, arguments, line number)], continuation lines joined, comments dropped."""
    instructions = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        word, _, rest = pending.partition(" ")
        instructions.append((word.upper(), rest.strip(), start))
        pending = ""
    if pending:
        raise AssertionError(f"Dockerfile ends inside a continued instruction (line {start})")
    return instructions


def stages(instructions):
    """[{'from': ..., 'name': ..., 'body': [(instr, args, line)]}] in order."""
    result = []
    for instr, args, line in instructions:
        if instr == "FROM":
            words = args.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            result.append({"from": words[0], "name": name, "body": [], "line": line})
        elif result:  # (an ARG before the first FROM belongs to no stage)
            result[-1]["body"].append((instr, args, line))
    return result


def shell_commands(run_args):
    """The simple commands of a RUN line (split at &&, ||, ;), each as a word list."""
    commands = []
    for part in re.split(r"&&|\|\||;", run_args):
        words = shlex.split(part)
        while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
            words = words[1:]  # VAR=value prefixes
        if words:
            commands.append(words)
    return commands


def script_invocations(path, script):
    """Argument lists with which the shell script at `path` runs `script` (e.g.
    'scripts/deps.sh'), found as "$root/scripts/deps.sh" ... or ./scripts/deps.sh ... lines."""
    calls = []
    pattern = re.compile(r'(?:"\$root"?/|\$root/|\./)' + re.escape(script) + r'"?((?:\s+[\w-]+)*)')
    for line in dc.read_text(path).splitlines():
        code = line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
        for match in pattern.finditer(code):
            calls.append(match.group(1).split())
    return calls


def ldd_libraries(binary):
    """{soname: path} of the shared libraries `ldd` resolves for binary."""
    out = dc.run(["ldd", binary], timeout=60)
    if out.returncode != 0:
        raise AssertionError(f"ldd {binary} failed: {out.stderr}")
    libs = {}
    for line in out.stdout.splitlines():
        line = line.strip()
        if "=>" in line:
            name, _, rest = line.partition("=>")
            target = rest.strip().split(" (")[0].strip()
            if target == "not found":
                raise AssertionError(f"ldd: {name.strip()} not found for {binary}")
            libs[name.strip()] = target
        elif line:
            libs[line.split()[0]] = line.split()[0]
    return libs


def dpkg_package_of(path):
    """The Debian package that ships `path` (trying the /usr-merged spellings too)."""
    candidates = [path, os.path.realpath(path)]
    for p in list(candidates):
        if p.startswith("/usr/"):
            candidates.append(p[len("/usr"):])
        else:
            candidates.append("/usr" + p)
    for candidate in candidates:
        out = dc.run(["dpkg", "-S", candidate], timeout=60)
        if out.returncode == 0:
            # "libhiredis0.14:amd64: /usr/lib/x86_64-linux-gnu/libhiredis.so.0.14"
            first = out.stdout.splitlines()[0]
            return first.split(": ", 1)[0].split(",")[0].split(":")[0].strip()
    raise AssertionError(f"dpkg -S finds no package for {path} (tried {candidates})")


def dockerignore_patterns():
    patterns = []
    for line in dc.read_text(".dockerignore").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            patterns.append(line)
    return patterns


def dockerignored(relpath, patterns):
    """Approximates Docker's .dockerignore matching (Go filepath.Match plus `**`, a pattern
    also excluding everything below a matched directory, later `!` patterns re-including)."""

    def matches(pattern, path):
        pattern = pattern.rstrip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        parts = path.split("/")
        return any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1))

    excluded = False
    for pattern in patterns:
        if pattern.startswith("!"):
            if matches(pattern[1:], relpath):
                excluded = False
        elif matches(pattern, relpath):
            excluded = True
    return excluded


class DockerfileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.text = dc.read_text("Dockerfile")
        cls.instructions = parse_dockerfile(cls.text)
        cls.stages = stages(cls.instructions)

    def stage(self, index):
        self.assertEqual(len(self.stages), 2, "two stages expected: build and runtime")
        return self.stages[index]

    def runs(self, stage):
        return [(args, line) for instr, args, line in stage["body"] if instr == "RUN"]

    # --- build stage: the same scripts as CI -----------------------------------------------
    def test_build_stage_is_debian_12(self):
        build = self.stage(0)
        self.assertEqual(build["from"], "debian:12")
        self.assertEqual(build["name"], "build")

    def test_build_stage_runs_the_ci_scripts(self):
        build = self.stage(0)
        commands = [c for args, _ in self.runs(build) for c in shell_commands(args)]
        deps = [c for c in commands if os.path.normpath(c[0]) == "scripts/deps.sh"]
        builds = [c for c in commands if os.path.normpath(c[0]) == "scripts/build"]
        self.assertTrue(deps, f"no RUN ./scripts/deps.sh in the build stage: {commands}")
        self.assertIn("build", deps[0][1:], "the build stage must install the `build` group")
        self.assertTrue(builds, f"no RUN ./scripts/build in the build stage: {commands}")
        # No private recipe next to them: packages and compiler flags come from the scripts.
        for c in commands:
            self.assertNotIn(c[0], ("apt-get", "apt", "cmake", "make", "g++", "c++"),
                             f"the build stage runs {c[0]} itself instead of the scripts: {c}")
        # Both scripts exist and are executable.
        for script in ("scripts/deps.sh", "scripts/build"):
            self.assertTrue(os.access(dc.repo_path(script), os.X_OK), f"{script} not executable")

    def test_ci_and_run_use_the_same_scripts(self):
        # CI: .ci/run -> scripts/test -> scripts/deps.sh build ...
        self.assertRegex(dc.read_text(".ci/run"), r"(?m)^exec \./scripts/test\b")
        test_deps = script_invocations("scripts/test", "scripts/deps.sh")
        self.assertTrue(test_deps, "scripts/test does not call scripts/deps.sh")
        self.assertTrue(any("build" in args for args in test_deps), test_deps)
        # scripts/run: deps.sh, then the same Release build as the Dockerfile.
        run_deps = script_invocations("scripts/run", "scripts/deps.sh")
        self.assertTrue(any("build" in a for a in run_deps), run_deps)
        self.assertTrue(script_invocations("scripts/run", "scripts/build"),
                        "scripts/run does not build with scripts/build")
        # scripts/build: the Release build of the keygate target into build-release/.
        build = dc.read_text("scripts/build")
        self.assertIn("-DCMAKE_BUILD_TYPE=Release", build)
        self.assertIn("--target keygate", build)
        self.assertIn('scripts/deps.sh" build', build)

    def test_runtime_copies_the_binary_scripts_build_produced(self):
        build, runtime = self.stage(0), self.stage(1)
        workdir = [a for i, a, _ in build["body"] if i == "WORKDIR"][-1]
        commands = [c for args, _ in self.runs(build) for c in shell_commands(args)]
        build_dir = os.path.join(workdir, "build-release")  # scripts/build's default
        for args, _ in self.runs(build):
            m = re.search(r"KEYGATE_BUILD_DIR=(\S+)", args)
            if m and "scripts/build" in args:
                build_dir = os.path.join(workdir, m.group(1))
        self.assertTrue(commands)
        copies = [a.split() for i, a, _ in runtime["body"]
                  if i == "COPY" and a.startswith("--from=")]
        self.assertEqual(len(copies), 1, copies)
        self.assertEqual(copies[0][0], "--from=build")
        self.assertEqual(os.path.normpath(copies[0][1]),
                         os.path.normpath(os.path.join(build_dir, "proxy", "keygate")))
        self.assertEqual(copies[0][2], "/usr/local/bin/keygate")

    # --- runtime stage: only keygate's libraries --------------------------------------------
    def runtime_packages(self):
        runtime = self.stage(1)
        packages = []
        for args, _ in self.runs(runtime):
            for c in shell_commands(args):
                if c[:2] == ["apt-get", "install"]:
                    self.assertIn("--no-install-recommends", c)
                    self.assertIn("-y", c)
                    packages += [w for w in c[2:] if not w.startswith("-")]
        return packages

    def test_runtime_stage_is_slim(self):
        runtime = self.stage(1)
        self.assertEqual(runtime["from"], "debian:12-slim")
        packages = self.runtime_packages()
        self.assertTrue(packages, "the runtime stage installs no package")
        for p in packages:
            self.assertFalse(p.endswith("-dev"), f"development package {p} in the runtime image")
        cleaned = any("rm -rf /var/lib/apt/lists" in a for a, _ in self.runs(runtime))
        self.assertTrue(cleaned, "apt lists left in the runtime image")

    def test_runtime_installs_every_linked_library(self):
        binary = dc.keygate_bin()
        self.assertIsNotNone(binary, "KEYGATE_BIN (the built keygate) is not set or not executable")
        installed = set(self.runtime_packages())
        needed = {}
        for soname, path in ldd_libraries(binary).items():
            if BASE_IMAGE_LIBS.match(soname) or BASE_IMAGE_LIBS.match(os.path.basename(path)):
                continue
            package = dpkg_package_of(path)
            if package in BASE_IMAGE_PACKAGES:
                continue
            needed[soname] = package
        self.assertTrue(needed, "ldd found no library beyond libc/libstdc++: wrong binary?")
        missing = {s: p for s, p in needed.items() if p not in installed}
        self.assertEqual(missing, {}, f"linked libraries whose package the runtime stage does "
                                      f"not install (soname: package): {missing}")
        extra = installed - set(needed.values()) - set(RUNTIME_EXTRAS)
        self.assertEqual(extra, set(), f"runtime packages keygate does not link: {sorted(extra)} "
                                       f"(linked: {sorted(needed.values())})")

    # --- user, filesystem, ports, entrypoint ------------------------------------------------
    def test_runs_as_non_root_numeric_user(self):
        runtime = self.stage(1)
        users = [a for i, a, _ in runtime["body"] if i == "USER"]
        self.assertEqual(len(users), 1, users)
        uid, _, gid = users[0].partition(":")
        self.assertTrue(uid.isdigit(), f"USER {users[0]}: numeric, so runAsNonRoot can verify it")
        self.assertNotEqual(int(uid), 0)
        if gid:
            self.assertTrue(gid.isdigit() and int(gid) != 0, users[0])
        # The user exists with that uid (useradd in the same image).
        self.assertRegex(self.text, rf"useradd[^\n]*--uid {uid}\b")
        # USER comes after every RUN (nothing later runs as root) and before ENTRYPOINT.
        body = [i for i, _, _ in runtime["body"]]
        self.assertGreater(body.index("USER"), max(n for n, i in enumerate(body) if i == "RUN"))
        self.assertLess(body.index("USER"), body.index("ENTRYPOINT"))
        # The manifests run the same uid.
        self.assertIn(f"runAsUser: {uid}", dc.read_text("deploy", "base", "deployment.yaml"))

    def test_read_only_root_filesystem_friendly(self):
        runtime = self.stage(1)
        volumes = [a for i, a, _ in runtime["body"] if i == "VOLUME"]
        self.assertEqual(len(volumes), 1)
        self.assertEqual(json.loads(volumes[0]), ["/tmp"])
        # The default config writes nothing: no log file, the registry read from the image.
        import yaml  # python3-yaml
        config = yaml.safe_load(dc.read_text("deploy", "docker", "keygate.yaml"))
        self.assertNotIn("file", config.get("log", {}), "a log file would need a writable path")
        self.assertTrue(config["registry"].startswith("/etc/keygate/examples/"))
        self.assertTrue(os.path.isfile(dc.repo_path(
            "config", "examples", os.path.relpath(config["registry"], "/etc/keygate/examples"))))

    def test_ports_entrypoint_and_config(self):
        runtime = self.stage(1)
        exposed = [a for i, a, _ in runtime["body"] if i == "EXPOSE"]
        self.assertEqual(" ".join(exposed).split(), ["6379", "9180", "9181"])
        entry = [a for i, a, _ in runtime["body"] if i == "ENTRYPOINT"]
        self.assertEqual(len(entry), 1)
        self.assertEqual(json.loads(entry[0]),
                         ["/usr/local/bin/keygate", "--config", "/etc/keygate/config/keygate.yaml"])
        copies = {a.split()[-1]: a.split()[0] for i, a, _ in runtime["body"]
                  if i == "COPY" and not a.startswith("--from=")}
        self.assertEqual(copies.get("/etc/keygate/config/keygate.yaml"),
                         "deploy/docker/keygate.yaml")
        self.assertEqual(copies.get("/etc/keygate/examples/"), "config/examples/")
        # The default config listens where EXPOSE says.
        import yaml
        config = yaml.safe_load(dc.read_text("deploy", "docker", "keygate.yaml"))
        self.assertEqual(config["listen"], "0.0.0.0:6379")
        self.assertEqual(config["admin"]["listen"], "0.0.0.0:9180")
        self.assertEqual(config["admin"]["metricsListen"], "0.0.0.0:9181")

    # --- no credentials ----------------------------------------------------------------------
    def test_no_secrets_in_the_image(self):
        for instr, args, line in self.instructions:
            if instr in ("ENV", "ARG", "LABEL"):
                self.assertNotRegex(args.upper(), r"PASSWORD|TOKEN|SECRET|PRIVATE|APIKEY|API_KEY",
                                    f"line {line}: {instr} {args}")
            if instr == "ADD":
                self.fail(f"line {line}: ADD (use COPY; ADD fetches URLs and unpacks archives)")
            if instr == "COPY":
                sources = [w for w in args.split()[:-1] if not w.startswith("--")]
                for source in sources:
                    self.assertIsNone(SECRET_NAME.search(source), f"line {line}: copies {source}")
        # Every file that could enter the build context (COPY . .): none looks like a
        # credential; and the sources, scripts and copied config are all there.
        listed = subprocess.run(["git", "-C", dc.REPO, "ls-files", "--cached", "--others",
                                 "--exclude-standard"], stdout=subprocess.PIPE, text=True,
                                timeout=60, check=True).stdout.splitlines()
        self.assertTrue(listed)
        patterns = dockerignore_patterns()
        context = [p for p in listed if not dockerignored(p, patterns)]
        leaked = [p for p in context if SECRET_NAME.search(p)]
        self.assertEqual(leaked, [], "files that look like credentials reach the build context")
        needed_prefixes = ("CMakeLists.txt", "proxy/", "config/", "policies/", "scripts/",
                           "deploy/docker/")
        dropped = [p for p in listed
                   if p.startswith(needed_prefixes) and dockerignored(p, patterns)]
        self.assertEqual(dropped, [], ".dockerignore drops files the image build needs")
        # The overlays (example password hashes) and local tool/build dirs stay out.
        for path in ("deploy/overlays/example/passwords.yaml", ".tools/x", "build-release/x",
                     ".git/config", "certs/server.key", "a/b/.env"):
            self.assertTrue(dockerignored(path, patterns), f"{path} would enter the context")

    def test_dockerignore_matcher(self):
        # The approximation above, against cases whose Docker result is known.
        self.assertTrue(dockerignored("build-x/a.o", ["build*/"]))
        self.assertTrue(dockerignored("x.pem", ["**/*.pem"]))
        self.assertTrue(dockerignored("a/b/x.pem", ["**/*.pem"]))
        self.assertFalse(dockerignored("a/x.pem.txt", ["**/*.pem"]))
        self.assertFalse(dockerignored("proxy/main.cpp", ["build*/", "**/*.key"]))
        self.assertFalse(dockerignored("a.key", ["*.key", "!a.key"]))

    # --- lint -----------------------------------------------------------------------------
    def lint(self, path):
        tool = dc.dockerfilelint()
        self.assertIsNotNone(tool, f"dockerfilelint not found: {dc.INSTALL_HINT}")
        out = dc.run([tool, "-o", "json", path], timeout=120, cwd=os.path.dirname(path))
        try:
            return json.loads(out.stdout)
        except ValueError:
            self.fail(f"dockerfilelint printed no JSON (exit {out.returncode}): "
                      f"{out.stdout}{out.stderr}")

    def test_dockerfilelint_clean(self):
        self.assertFalse(os.path.exists(dc.repo_path(".dockerfilelintrc")),
                         "a .dockerfilelintrc would switch rules off")
        report = self.lint(dc.repo_path("Dockerfile"))
        issues = [f"line {i['line']}: {i['title']}: {i['content']}"
                  for f in report["files"] for i in f["issues"]]
        self.assertEqual(report["totalIssues"], 0, "\n".join(issues))

    def test_dockerfilelint_finds_problems(self):
        # The linter in use does report: a Dockerfile with known faults gets findings.
        with tempfile.TemporaryDirectory() as tmp:
            bad = os.path.join(tmp, "Dockerfile")
            with open(bad, "w", encoding="utf-8") as f:
                f.write("FROM debian\nRUN apt-get install foo\nRUN sudo ls\nEXPOSE 80000\n")
            report = self.lint(bad)
        titles = {i["title"] for f in report["files"] for i in f["issues"]}
        self.assertGreaterEqual(report["totalIssues"], 4, titles)
        self.assertIn("Base Image Missing Tag", titles)


if __name__ == "__main__":
    unittest.main(verbosity=2)
