package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	ts "github.com/udmg/gateway/testsupport"
)

// server runs the real udmg-server binary with args and an environment
// without the caller's UDMG_* variables plus extra, and returns its exit
// code, stdout and stderr.
func server(t *testing.T, dir string, extra []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(ts.ServerBinary(t), args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "UDMG_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, extra...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("udmg-server %s: %v", strings.Join(args, " "), err)
		}
		code = exit.ExitCode()
	}
	return code, out.String(), errOut.String()
}

// TestVersion: one line with the module version, the commit the binary
// was built from (a commit of this repository, "(modified)" when the tree
// had changes) and the Go toolchain; "devel" where the build recorded none.
func TestVersion(t *testing.T) {
	line := regexp.MustCompile(`^udmg-server version (\S+) commit ([0-9a-f]{40}|devel)( \(modified\))? (go\S+)\n$`)
	for _, vcs := range []string{"false", "true"} {
		if err := exec.Command("git", "rev-parse", "--is-inside-work-tree").Run(); vcs == "true" && err != nil {
			t.Skipf("SKIPPED the stamped build: not in a git checkout or no git (%v)", err)
		}
		bin := filepath.Join(t.TempDir(), "udmg-server")
		build := exec.Command("go", "build", "-buildvcs="+vcs, "-o", bin, ".")
		// No index.lock taken by the git status the build runs: others
		// commit in this checkout meanwhile.
		build.Env = append(os.Environ(), "GIT_OPTIONAL_LOCKS=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build -buildvcs=%s: %v\n%s", vcs, err, out)
		}
		out, err := exec.Command(bin, "-version").Output()
		if err != nil {
			t.Fatalf("-version: %v", err)
		}
		m := line.FindStringSubmatch(string(out))
		if m == nil {
			t.Fatalf("-buildvcs=%s: -version printed %q", vcs, out)
		}
		if m[4] != runtime.Version() {
			t.Errorf("-version names %s, built with %s", m[4], runtime.Version())
		}
		if vcs == "false" {
			if m[1] != "devel" || m[2] != "devel" || m[3] != "" {
				t.Errorf("a build without VCS stamping: %q, want version devel commit devel", out)
			}
			continue
		}
		if m[2] == "devel" {
			t.Fatalf("a build stamped from this checkout names no commit: %q", out)
		}
		if err := exec.Command("git", "cat-file", "-e", m[2]+"^{commit}").Run(); err != nil {
			t.Errorf("-version names commit %s, not a commit of this repository: %v", m[2], err)
		}
	}
}

// TestCheckConfig: -check-config loads and validates a file as start-up
// does, refusals outside config.Load included, and touches nothing: no
// DataDir, no GatewayHome, no port (the admin port stays held by this test,
// as by a running node whose file is checked before a restart).
func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	port := held.Addr().(*net.TCPAddr).Port
	write := func(name, body string) string {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return name
	}
	base := "[admin]\nHost = 127.0.0.1\nPort = " + strconv.Itoa(port) + "\n[paths]\nGatewayHome = home\n[cluster]\nDataDir = node\n"

	good := write("good.ini", base+"JoinToken = tok-1\nJoin = 127.0.0.2:7946\nBootstrapExpect = 3\n")
	code, out, errOut := server(t, dir, nil, "-check-config", good)
	if code != 0 || out != "good.ini: ok\n" || errOut != "" {
		t.Fatalf("-check-config good.ini: exit %d, stdout %q, stderr %q; want 0, \"good.ini: ok\"", code, out, errOut)
	}
	for _, p := range []string{"node", "home"} {
		if _, err := os.Stat(filepath.Join(dir, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("-check-config created %s (%v)", p, err)
		}
	}

	for _, tc := range []struct {
		name, file string
		env        []string
		want       string // in the one line of stderr, after "FILE: "
	}{
		{"typo", write("typo.ini", base+"[listeners]\nSFTPPrt = 22\n"), nil, "[listeners] SFTPPrt: unknown key (did you mean SFTPPort?)"},
		{"rule between keys", write("nodeid.ini", base+"Join = 127.0.0.2:7946\n"), nil, "no node identity"},
		{"gossip key (checked outside config.Load)", write("gossip.ini", base+"GossipKey = bm90LWEta2V5\nJoinToken = t\n"), nil, "[cluster] GossipKey: must be 16, 24 or 32 bytes"},
		{"node certificate files", write("cert.ini", base+"TLSCert = missing.pem\nTLSKey = missing.key\nTLSCA = ca.pem\n"), nil, "[cluster] TLSCert/TLSKey missing.pem, missing.key"},
		{"key file", write("aes.ini", base+"[database]\nAESPassphrase = no-such.key\n"), nil, "[database] AESPassphrase no-such.key"},
		{"environment override", write("env.ini", base), []string{"UDMG_CONTROLLER_DEADLINE=soon"}, "UDMG_CONTROLLER_DEADLINE: \"soon\" is not a duration"},
		{"missing file", "absent.ini", nil, "open: no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := server(t, dir, tc.env, "-check-config", tc.file)
			if code != 1 || out != "" {
				t.Fatalf("exit %d, stdout %q (stderr %q); want 1 and nothing on stdout", code, out, errOut)
			}
			if strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, tc.file+": ") || !strings.Contains(errOut, tc.want) {
				t.Fatalf("stderr %q; want one line starting %q and containing %q", errOut, tc.file+": ", tc.want)
			}
		})
	}

	// The same refusal as start-up's, word for word.
	_, _, check := server(t, dir, nil, "-check-config", "typo.ini")
	code, _, start := server(t, dir, nil, "-c", "typo.ini")
	if code == 0 || start != "udmg-server: "+check {
		t.Errorf("start-up refused typo.ini with %q (exit %d), -check-config with %q", start, code, check)
	}
}
