package testsupport

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// LoopFS is a directory on its own loop-mounted ext4 file system, so that a
// test can stall every write to it (fsfreeze) without touching the rest of
// the machine: a node's DataDir frozen this way blocks Raft's log writes as
// a stalled disk would.
type LoopFS struct {
	Dir   string // the mount point
	image string
	dev   string

	mu      sync.Mutex
	frozen  bool
	mounted bool
}

// LoopFSAvailable says why loop-mounted file systems cannot be used here
// ("" when they can): tests skip loudly with that reason.
func LoopFSAvailable() string {
	if os.Geteuid() != 0 {
		return "loop-mounted ext4 needs root"
	}
	for _, tool := range []string{"losetup", "mkfs.ext4", "mount", "umount", "fsfreeze"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " is missing (util-linux, e2fsprogs)"
		}
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		return "no /dev/loop-control: " + err.Error()
	}
	return ""
}

// NewLoopFS makes a sparse image of size bytes next to dir (dir + ".img"),
// formats it ext4 and mounts it on dir (created when missing). Close, also
// registered with t.Cleanup, thaws, unmounts and detaches the loop device.
func NewLoopFS(t testing.TB, dir string, size int64) *LoopFS {
	t.Helper()
	fs, err := MountLoopFS(dir, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := fs.Close(); err != nil {
			t.Errorf("loop fs %s: %v", dir, err)
		}
	})
	return fs
}

// MountLoopFS is NewLoopFS without a test: the caller must Close it.
func MountLoopFS(dir string, size int64) (*LoopFS, error) {
	fs := &LoopFS{Dir: dir, image: strings.TrimRight(dir, "/") + ".img"}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(fs.image)
	if err != nil {
		return nil, err
	}
	err = f.Truncate(size)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("size %s: %w", fs.image, err)
	}
	if err := run("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1", fs.image); err != nil {
		os.Remove(fs.image)
		return nil, err
	}
	out, err := exec.Command("losetup", "--find", "--show", fs.image).CombinedOutput()
	if err != nil {
		os.Remove(fs.image)
		return nil, fmt.Errorf("losetup %s: %v: %s", fs.image, err, out)
	}
	fs.dev = strings.TrimSpace(string(out))
	if err := run("mount", "-t", "ext4", fs.dev, dir); err != nil {
		run("losetup", "-d", fs.dev)
		os.Remove(fs.image)
		return nil, err
	}
	fs.mounted = true
	// A fresh ext4 has lost+found, which no node expects in its directory.
	os.Remove(filepath.Join(dir, "lost+found"))
	return fs, nil
}

// Chown gives the file system's root directory to uid:gid (a node running
// as that user owns its DataDir).
func (fs *LoopFS) Chown(uid, gid int) error { return os.Chown(fs.Dir, uid, gid) }

// Freeze stalls every write to the file system (fsfreeze -f): writers block
// in the kernel, uninterruptibly, until Thaw. Always Thaw before killing a
// process that may be blocked on it.
func (fs *LoopFS) Freeze() error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.frozen || !fs.mounted {
		return nil
	}
	if err := run("fsfreeze", "-f", fs.Dir); err != nil {
		return err
	}
	fs.frozen = true
	return nil
}

// Thaw lets stalled writes proceed (fsfreeze -u); a no-op when not frozen.
func (fs *LoopFS) Thaw() error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if !fs.frozen {
		return nil
	}
	if err := run("fsfreeze", "-u", fs.Dir); err != nil {
		return err
	}
	fs.frozen = false
	return nil
}

// Frozen reports whether the file system is frozen now.
func (fs *LoopFS) Frozen() bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.frozen
}

// Close thaws, unmounts (lazily when still busy) and detaches the loop
// device, then removes the image; it may be called more than once. Kill the
// processes using the file system first.
func (fs *LoopFS) Close() error {
	var errs []string
	if err := fs.Thaw(); err != nil {
		errs = append(errs, err.Error())
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.mounted {
		if err := run("umount", fs.Dir); err != nil {
			if err2 := run("umount", "-l", fs.Dir); err2 != nil {
				errs = append(errs, err.Error(), err2.Error())
			}
		}
		fs.mounted = false
	}
	if fs.dev != "" {
		// The loop device of a lazily unmounted file system detaches by
		// itself once the last user is gone (autoclear).
		if err := run("losetup", "-d", fs.dev); err != nil && !strings.Contains(err.Error(), "No such device") {
			errs = append(errs, err.Error())
		}
		fs.dev = ""
	}
	if fs.image != "" {
		os.Remove(fs.image)
		fs.image = ""
	}
	if len(errs) > 0 {
		return fmt.Errorf("close loop fs %s: %s", fs.Dir, strings.Join(errs, "; "))
	}
	return nil
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
