package tasks

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/udmg/gateway/confine"
)

// ErrOutside marks a path refused because it leaves GatewayHome (by "..",
// an absolute path elsewhere or a symlink).
var ErrOutside = errors.New("outside GatewayHome")

// path turns a path argument (relative to GatewayHome, or absolute inside
// it) into a clean path relative to Home that stays in Home, symlinks
// included, and reaches no protected path. what names the argument in the
// error. "." (Home itself) is allowed: it is a directory.
func (c *call) path(what, p string) (string, error) {
	if strings.TrimSpace(p) == "" {
		return "", fmt.Errorf("%s: empty path", what)
	}
	p = filepath.FromSlash(p)
	rel := filepath.Clean(p)
	if filepath.IsAbs(p) {
		home, err := filepath.Abs(c.env.Home)
		if err != nil {
			return "", fmt.Errorf("%s: GatewayHome: %w", what, err)
		}
		if rel, err = filepath.Rel(home, rel); err != nil {
			return "", fmt.Errorf("%s %q: %w", what, p, ErrOutside)
		}
	}
	if rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("%s %q: %w", what, p, ErrOutside)
	}
	full := filepath.Join(c.env.Home, rel)
	// os.Root refuses symlinks out as well; resolving first gives the
	// operator a clearer error than "path escapes from parent".
	if in, err := confine.Within(c.env.Home, full); err != nil {
		return "", fmt.Errorf("%s %q: %w", what, p, err)
	} else if !in {
		return "", fmt.Errorf("%s %q leads through a symlink: %w", what, p, ErrOutside)
	}
	if c.env.Guard != nil {
		if err := c.env.Guard.File(full); err != nil {
			return "", fmt.Errorf("%s: %w", what, err)
		}
	}
	return rel, nil
}

// file is the chain's file, confined.
func (c *call) file() (string, error) {
	if c.facts.Path == "" {
		return "", errors.New("the transfer has no file yet")
	}
	return c.path("file", c.facts.Path)
}

// nameOf is the name src goes by elsewhere: Facts.Name for the chain's
// file when set, else its base name.
func (c *call) nameOf(src string) string {
	if c.facts.Name != "" {
		if f, err := c.file(); err == nil && f == src {
			return c.facts.Name
		}
	}
	return filepath.Base(src)
}

// fileAnd is the chain's file and the confined path argument name: the
// two every task with a destination starts from.
func (c *call) fileAnd(name string) (src, dst string, err error) {
	if src, err = c.file(); err != nil {
		return "", "", err
	}
	dst, err = c.path(name, c.args.str(name))
	return src, dst, err
}

// source is the "file" argument, confined, else the chain's file.
func (c *call) source() (string, error) {
	if c.args.has("file") {
		return c.path("file", c.args.str("file"))
	}
	return c.file()
}

// argPath is a path argument, or def (already relative to Home) when the
// argument is absent.
func (c *call) argPath(name, def string) (string, error) {
	if !c.args.has(name) {
		return c.path(name, def)
	}
	return c.path(name, c.args.str(name))
}

// tmpName is the temporary name a write goes through: in the destination's
// directory (so the rename is atomic), hidden, and the same on every rerun
// of the transfer's task, which overwrites what a crash left.
func (c *call) tmpName(rel string) string {
	return filepath.Join(filepath.Dir(rel),
		"."+filepath.Base(rel)+"."+strconv.FormatUint(c.facts.TransferID, 10)+".tmp")
}

// write makes rel hold what fill writes, all or nothing: a temporary file,
// fsync, rename over rel, fsync of the directory.
func (c *call) write(rel string, fill func(w io.Writer) error) error {
	dir := filepath.Dir(rel)
	if err := c.root.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create directory %s: %w", dir, err)
	}
	tmp := c.tmpName(rel)
	f, err := c.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("write %s: %w", rel, err)
	}
	err = fill(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = c.root.Rename(tmp, rel)
	}
	if err != nil {
		_ = c.root.Remove(tmp)
		return fmt.Errorf("write %s: %w", rel, err)
	}
	return c.syncDir(dir)
}

// copyTo writes a copy of src to dst (through write).
func (c *call) copyTo(src, dst string) error {
	in, err := c.root.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return c.write(dst, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
}

// rename moves src to dst, across file systems too (a copy through write,
// then the source removed: a crash in between leaves both, and a rerun
// copies again).
func (c *call) rename(src, dst string) error {
	dir := filepath.Dir(dst)
	if err := c.root.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create directory %s: %w", dir, err)
	}
	err := c.root.Rename(src, dst)
	if errors.Is(err, syscall.EXDEV) {
		if err = c.copyTo(src, dst); err == nil {
			err = c.root.Remove(src)
		}
	}
	if err != nil {
		return fmt.Errorf("rename %s to %s: %w", src, dst, err)
	}
	if err := c.syncDir(dir); err != nil {
		return err
	}
	return c.syncDir(filepath.Dir(src))
}

// syncDir makes a rename or removal in dir durable.
func (c *call) syncDir(dir string) error {
	d, err := c.root.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// exists reports whether rel is there (not following a last symlink).
func (c *call) exists(rel string) (bool, error) {
	_, err := c.root.Lstat(rel)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}
