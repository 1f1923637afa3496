package tasks_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/udmg/gateway/tasks"
	"github.com/udmg/gateway/testsupport"
)

// TestMoveAcrossFileSystems: GatewayHome with a directory on another file
// system (a loop-mounted ext4): MOVE copies through a temporary name and
// removes the source, and a rerun after the copy but before the removal
// (both present) ends the same.
func TestMoveAcrossFileSystems(t *testing.T) {
	if why := testsupport.LoopFSAvailable(); why != "" {
		t.Skip("SKIP (loudly): " + why)
	}
	home := t.TempDir()
	testsupport.NewLoopFS(t, filepath.Join(home, "archive"), 16<<20)
	if err := os.MkdirAll(filepath.Join(home, "in"), 0o750); err != nil {
		t.Fatal(err)
	}
	if sameDevice(t, filepath.Join(home, "in"), filepath.Join(home, "archive")) {
		t.Fatal("archive/ is on the same file system as in/: the test would not cross one")
	}
	src := filepath.Join(home, "in", "a.txt")
	env := tasks.Env{Home: home}
	move := tasks.Task{Type: "MOVE", Args: map[string]any{"path": "archive/2026"}}
	f := tasks.Facts{TransferID: 7, Path: "in/a.txt", TaskKey: "post/0"}
	for _, leftover := range []string{"", "stale copy"} {
		if err := os.WriteFile(src, []byte("payload"), 0o640); err != nil {
			t.Fatal(err)
		}
		if leftover != "" { // the crash came after the copy, before the removal
			if err := os.WriteFile(filepath.Join(home, "archive/2026/a.txt"), []byte(leftover), 0o640); err != nil {
				t.Fatal(err)
			}
		}
		r, err := tasks.Run(context.Background(), move, f, env)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(home, r.Path))
		if err != nil || string(b) != "payload" {
			t.Fatalf("moved file %q, %v", b, err)
		}
		if _, err := os.Stat(src); !os.IsNotExist(err) {
			t.Errorf("the source is still there: %v", err)
		}
		entries, _ := os.ReadDir(filepath.Join(home, "archive/2026"))
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".tmp") {
				t.Errorf("temporary file left: %s", e.Name())
			}
		}
	}
}

func sameDevice(t *testing.T, a, b string) bool {
	t.Helper()
	var sa, sb syscall.Stat_t
	if err := syscall.Stat(a, &sa); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(b, &sb); err != nil {
		t.Fatal(err)
	}
	return sa.Dev == sb.Dev
}
