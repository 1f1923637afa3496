package listeners

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
)

// StagingPrefix starts the name of every staging file: an upload (by a
// client, or pulled from a partner by the engine) is written under
// StagingName in the directory of its final name and renamed into place
// only once its end is committed under a valid lease, so that a late write
// of a deposed node can only land in its own staging file. Client paths
// with a component starting with it are refused, and listings hide them,
// so no user file can collide with a staging file.
const StagingPrefix = ".udmg-staging."

// StagingName is the staging file of transfer id written under lease
// epoch: ".udmg-staging.<id>.<epoch>".
func StagingName(id, epoch uint64) string {
	return StagingPrefix + strconv.FormatUint(id, 10) + "." + strconv.FormatUint(epoch, 10)
}

// IsStaging reports whether a file name (one path component) is reserved
// for staging files.
func IsStaging(name string) bool { return strings.HasPrefix(name, StagingPrefix) }

// ParseStaging reads the transfer ID and epoch of a staging name.
func ParseStaging(name string) (id, epoch uint64, ok bool) {
	rest, found := strings.CutPrefix(name, StagingPrefix)
	if !found {
		return 0, 0, false
	}
	a, b, found := strings.Cut(rest, ".")
	if !found {
		return 0, 0, false
	}
	id, err1 := strconv.ParseUint(a, 10, 64)
	epoch, err2 := strconv.ParseUint(b, 10, 64)
	return id, epoch, err1 == nil && err2 == nil
}

// FindStaging lists the staging files of transfer id in dir (relative to
// root), the newest epoch last. No directory, or none, is no error.
func FindStaging(root *os.Root, dir string, id uint64) ([]string, error) {
	d, err := root.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	return StagingOf(names, id), nil
}

// StagingOf picks the staging files of transfer id among the names of one
// directory, the newest epoch last.
func StagingOf(names []string, id uint64) []string {
	type staged struct {
		name  string
		epoch uint64
	}
	var out []staged
	for _, n := range names {
		if i, e, ok := ParseStaging(n); ok && i == id {
			out = append(out, staged{n, e})
		}
	}
	for i := 1; i < len(out); i++ { // a handful at most
		for j := i; j > 0 && out[j].epoch < out[j-1].epoch; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	names = names[:0:0]
	for _, s := range out {
		names = append(names, s.name)
	}
	return names
}

// CopyPrefix copies the first n bytes of src into dst from offset 0 (the
// kernel copies file to file where it can). It reports how many it copied:
// fewer when src is shorter.
func CopyPrefix(dst, src *os.File, n int64) (int64, error) {
	if n <= 0 {
		return 0, nil
	}
	if _, err := dst.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	return dst.ReadFrom(io.LimitReader(src, n))
}

// clientPath checks a path given by a client: a component naming a
// staging file is refused as if nothing were there.
func clientPath(name string) error {
	p := relPath(name)
	if p == "." {
		return nil
	}
	for _, c := range strings.Split(p, "/") {
		if IsStaging(c) {
			return &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
	}
	return nil
}

// visible drops staging files from a directory listing.
func visible(infos []os.FileInfo) []os.FileInfo {
	out := infos[:0]
	for _, fi := range infos {
		if !IsStaging(fi.Name()) {
			out = append(out, fi)
		}
	}
	clear(infos[len(out):])
	return out
}

// namedInfo is a staging file's FileInfo under the name the client knows.
type namedInfo struct {
	fs.FileInfo
	name string
	size int64
}

func (n namedInfo) Name() string { return n.name }
func (n namedInfo) Size() int64  { return n.size }

func dirOf(rel string) string { return path.Dir(rel) }
