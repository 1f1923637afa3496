package tasks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// ErrRefused marks a file a CHECK or CHECKSUM task refuses.
var ErrRefused = errors.New("file refused")

func init() {
	specs["COPY"] = kindSpec{args: []arg{{name: "path", kind: kString, required: true}}, run: runCopy}
	specs["MOVE"] = kindSpec{args: []arg{{name: "path", kind: kString, required: true}}, run: runMove}
	specs["RENAME"] = kindSpec{args: []arg{{name: "path", kind: kString, required: true}}, run: runRename}
	specs["DELETE"] = kindSpec{run: runDelete}
	specs["CHECK"] = kindSpec{
		args: []arg{
			{name: "namePattern", kind: kGlob},
			{name: "nameRegexp", kind: kRegexp},
			{name: "minSize", kind: kNumber},
			{name: "maxSize", kind: kNumber},
		},
		check: checkCheck,
		run:   runCheck,
	}
	specs["CHECKSUM"] = kindSpec{
		args: []arg{
			{name: "path", kind: kString},
			{name: "expect", kind: kString},
			{name: "sidecar", kind: kString},
		},
		check: checkChecksum,
		run:   runChecksum,
	}
}

// COPY {"path": dir}: a copy of the file in dir, same name; the chain stays
// on the original. A rerun copies again over the same name.
func runCopy(_ context.Context, c *call) (Result, error) {
	src, dir, err := c.fileAnd("path")
	if err != nil {
		return Result{}, err
	}
	dst := filepath.Join(dir, c.nameOf(src))
	if dst == src {
		return Result{}, fmt.Errorf("path %q: the copy would be the file itself", dir)
	}
	if err := c.copyTo(src, dst); err != nil {
		return Result{}, err
	}
	return Result{Output: "copied to " + dst}, nil
}

// MOVE {"path": dir}: the file moves into dir, same name.
func runMove(_ context.Context, c *call) (Result, error) {
	src, dir, err := c.fileAnd("path")
	if err != nil {
		return Result{}, err
	}
	return c.moveTo(src, filepath.Join(dir, c.nameOf(src)))
}

// RENAME {"path": file}: the file takes the new path.
func runRename(_ context.Context, c *call) (Result, error) {
	src, dst, err := c.fileAnd("path")
	if err != nil {
		return Result{}, err
	}
	return c.moveTo(src, dst)
}

// moveTo renames src to dst, and recognises a move a crash left done but
// unrecorded: the source gone and the destination present.
func (c *call) moveTo(src, dst string) (Result, error) {
	moved := Result{Path: dst, Output: "moved to " + dst}
	if src == dst {
		return moved, nil
	}
	there, err := c.exists(src)
	if err != nil {
		return Result{}, err
	}
	if !there {
		done, err := c.exists(dst)
		if err != nil {
			return Result{}, err
		}
		if !done {
			return Result{}, fmt.Errorf("neither %s nor %s exists", src, dst)
		}
		moved.Output = "already moved to " + dst
		return moved, nil
	}
	if err := c.rename(src, dst); err != nil {
		return Result{}, err
	}
	return moved, nil
}

// DELETE {}: the file is removed; a file already gone is done.
func runDelete(_ context.Context, c *call) (Result, error) {
	src, err := c.file()
	if err != nil {
		return Result{}, err
	}
	err = c.root.Remove(src)
	if errors.Is(err, os.ErrNotExist) {
		return Result{Output: src + " already deleted"}, nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("delete %s: %w", src, err)
	}
	return Result{Output: "deleted " + src}, c.syncDir(filepath.Dir(src))
}

func checkCheck(a args) error {
	if !a.has("namePattern") && !a.has("nameRegexp") && !a.has("minSize") && !a.has("maxSize") {
		return errors.New("give at least one of namePattern, nameRegexp, minSize, maxSize")
	}
	if a.has("minSize") && a.has("maxSize") && a.num("minSize", 0) > a.num("maxSize", 0) {
		return fmt.Errorf("minSize %d is above maxSize %d", a.num("minSize", 0), a.num("maxSize", 0))
	}
	return nil
}

// CHECK: refuse the file by its base name or its size. The size is the
// file's on disk when it exists, else the announced Facts.Filesize (a
// receive's pre-tasks run before the file arrives); an unknown size (-1)
// passes the size checks.
func runCheck(_ context.Context, c *call) (Result, error) {
	name := baseName(c.facts.Path)
	if name == "" {
		name = baseName(c.facts.OriginalName)
	}
	if p := c.args.str("namePattern"); c.args.has("namePattern") {
		if ok, _ := path.Match(p, name); !ok {
			return Result{}, fmt.Errorf("%w: name %q does not match namePattern %q", ErrRefused, name, p)
		}
	}
	if re := c.args.str("nameRegexp"); c.args.has("nameRegexp") {
		if !regexp.MustCompile(re).MatchString(name) {
			return Result{}, fmt.Errorf("%w: name %q does not match nameRegexp %q", ErrRefused, name, re)
		}
	}
	size := c.facts.Filesize
	if c.facts.Path != "" {
		rel, err := c.file()
		if err != nil {
			return Result{}, err
		}
		fi, err := c.root.Stat(rel)
		switch {
		case err == nil:
			size = fi.Size()
		case !errors.Is(err, os.ErrNotExist):
			return Result{}, err
		}
	}
	if size >= 0 {
		if lo := c.args.num("minSize", -1); lo >= 0 && size < lo {
			return Result{}, fmt.Errorf("%w: %q is %d bytes, under minSize %d", ErrRefused, name, size, lo)
		}
		if hi := c.args.num("maxSize", -1); hi >= 0 && size > hi {
			return Result{}, fmt.Errorf("%w: %q is %d bytes, over maxSize %d", ErrRefused, name, size, hi)
		}
	}
	return Result{Output: fmt.Sprintf("%q accepted (%d bytes)", name, size)}, nil
}

var sha256Hex = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

func checkChecksum(a args) error {
	for _, pair := range [][2]string{{"expect", "sidecar"}, {"path", "expect"}, {"path", "sidecar"}} {
		if err := a.exclusive(pair[0], pair[1]); err != nil {
			return err
		}
	}
	if e := a.str("expect"); a.has("expect") && !strings.Contains(e, "#") && !sha256Hex.MatchString(e) {
		return fmt.Errorf("argument \"expect\": %q is not a sha256 in hex (64 digits)", e)
	}
	return nil
}

// CHECKSUM: with "expect" or "sidecar", refuse the file unless its sha256
// is the one given (a sidecar in sha256sum format: the first field counts);
// otherwise write the sidecar (default FILE.sha256, sha256sum format).
func runChecksum(_ context.Context, c *call) (Result, error) {
	src, err := c.file()
	if err != nil {
		return Result{}, err
	}
	sum, err := c.sha256(src)
	if err != nil {
		return Result{}, err
	}
	out := Result{Output: "sha256 " + sum}
	want := strings.ToLower(c.args.str("expect"))
	if c.args.has("sidecar") {
		side, err := c.path("sidecar", c.args.str("sidecar"))
		if err != nil {
			return Result{}, err
		}
		b, err := c.root.ReadFile(side)
		if err != nil {
			return Result{}, fmt.Errorf("sidecar: %w", err)
		}
		fields := strings.Fields(string(b))
		if len(fields) == 0 || !sha256Hex.MatchString(fields[0]) {
			return Result{}, fmt.Errorf("sidecar %s holds no sha256", side)
		}
		want = strings.ToLower(fields[0])
	}
	if want != "" {
		if sum != want {
			return Result{}, fmt.Errorf("%w: %s has sha256 %s, expected %s", ErrRefused, src, sum, want)
		}
		return out, nil
	}
	side, err := c.argPath("path", src+".sha256")
	if err != nil {
		return Result{}, err
	}
	line := sum + "  " + filepath.Base(src) + "\n"
	if err := c.write(side, func(w io.Writer) error {
		_, err := io.WriteString(w, line)
		return err
	}); err != nil {
		return Result{}, err
	}
	return out, nil
}

func (c *call) sha256(rel string) (string, error) {
	f, err := c.root.Open(rel)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", rel, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
