package tasks

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"strings"
)

// ErrUnsafeEntry marks an archive EXTRACT refuses: an entry that would land
// outside its directory ("..", an absolute name) or a link.
var ErrUnsafeEntry = errors.New("unsafe archive entry")

var formats = []string{"zip", "tar.gz"}

func init() {
	specs["ARCHIVE"] = kindSpec{
		args: []arg{
			{name: "path", kind: kString, required: true},
			{name: "file", kind: kString},
			{name: "format", kind: kString, oneOf: formats},
		},
		check: func(a args) error {
			if p := a.str("path"); !strings.Contains(p, "#") {
				_, err := format(a, p)
				return err
			}
			return nil
		},
		run: runArchive,
	}
	specs["EXTRACT"] = kindSpec{
		args: []arg{
			{name: "path", kind: kString},
			{name: "format", kind: kString, oneOf: formats},
			{name: "maxSize", kind: kNumber},
		},
		run: runExtract,
	}
}

// format is the archive format: the argument, else the name's extension.
func format(a args, name string) (string, error) {
	if f := strings.ToLower(a.str("format")); f != "" {
		return f, nil
	}
	switch n := strings.ToLower(name); {
	case strings.HasSuffix(n, ".zip"):
		return "zip", nil
	case strings.HasSuffix(n, ".tar.gz"), strings.HasSuffix(n, ".tgz"):
		return "tar.gz", nil
	}
	return "", fmt.Errorf("cannot tell the format of %s from its name: give \"format\" (zip or tar.gz)", name)
}

// ARCHIVE: an archive at path holding file (default the chain's file; a
// directory is archived whole, symlinks inside skipped), entries named
// from the file's base name. The chain stays on its file.
func runArchive(_ context.Context, c *call) (Result, error) {
	src, err := c.source()
	if err != nil {
		return Result{}, err
	}
	dst, err := c.path("path", c.args.str("path"))
	if err != nil {
		return Result{}, err
	}
	form, err := format(c.args, dst)
	if err != nil {
		return Result{}, err
	}
	n := 0
	err = c.write(dst, func(w io.Writer) error {
		n = 0
		var add func(name string, fi fs.FileInfo, r io.Reader) error
		var closeAll func() error
		if form == "zip" {
			zw := zip.NewWriter(w)
			add = func(name string, fi fs.FileInfo, r io.Reader) error {
				h, err := zip.FileInfoHeader(fi)
				if err != nil {
					return err
				}
				h.Name, h.Method = name, zip.Deflate
				fw, err := zw.CreateHeader(h)
				if err == nil {
					_, err = io.Copy(fw, r)
				}
				return err
			}
			closeAll = zw.Close
		} else {
			gz := gzip.NewWriter(w)
			tw := tar.NewWriter(gz)
			add = func(name string, fi fs.FileInfo, r io.Reader) error {
				h, err := tar.FileInfoHeader(fi, "")
				if err != nil {
					return err
				}
				h.Name = name
				if err := tw.WriteHeader(h); err != nil {
					return err
				}
				_, err = io.Copy(tw, r)
				return err
			}
			closeAll = func() error { return errors.Join(tw.Close(), gz.Close()) }
		}
		base := filepath.ToSlash(filepath.Dir(src))
		err := fs.WalkDir(c.root.FS(), filepath.ToSlash(src), func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			if p == filepath.ToSlash(dst) || strings.HasPrefix(path.Base(p), "."+path.Base(filepath.ToSlash(dst))+".") {
				return nil // the archive itself, being written inside the tree
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			f, err := c.root.Open(filepath.FromSlash(p))
			if err != nil {
				return err
			}
			defer f.Close()
			name := strings.TrimPrefix(p, base+"/")
			if base == "." {
				name = p
			}
			n++
			return add(name, fi, f)
		})
		return errors.Join(err, closeAll())
	})
	if err != nil {
		return Result{}, err
	}
	return Result{Output: fmt.Sprintf("archived %d files of %s in %s", n, src, dst)}, nil
}

// entry is one member of an archive being extracted.
type entry struct {
	name string
	size int64 // as the archive declares it (the readers hold it to that)
	dir  bool
	open func() (io.Reader, func() error, error)
}

// EXTRACT: unpack the chain's file into path (default the file's directory).
// Every entry is checked before anything is written: a name with "..", an
// absolute name or a link (symbolic or hard) refuses the whole archive.
// Each file is written through write, so a rerun rewrites them whole.
// maxSize (bytes, default none) bounds what the archive may expand to: the
// sizes the entries declare are checked before anything is written, and
// what is written is held to the bound as well.
func runExtract(_ context.Context, c *call) (Result, error) {
	src, err := c.file()
	if err != nil {
		return Result{}, err
	}
	dir, err := c.argPath("path", filepath.Dir(src))
	if err != nil {
		return Result{}, err
	}
	form, err := format(c.args, src)
	if err != nil {
		return Result{}, err
	}
	// Pass one checks, pass two writes.
	var files int
	limit := c.args.num("maxSize", -1)
	for pass := range 2 {
		files = 0
		left := limit
		err := c.entries(src, form, func(e entry) error {
			name, err := safeEntry(e.name)
			if err != nil {
				return err
			}
			dst, err := c.path("entry "+e.name, filepath.Join(dir, name))
			if err != nil {
				return err
			}
			if pass == 0 {
				if left -= e.size; limit >= 0 && left < 0 {
					return fmt.Errorf("the archive expands past maxSize %d bytes", limit)
				}
				return nil
			}
			if e.dir {
				return c.root.MkdirAll(dst, 0o750)
			}
			files++
			r, done, err := e.open()
			if err != nil {
				return err
			}
			defer done()
			return c.write(dst, func(w io.Writer) error {
				if limit < 0 {
					_, err := io.Copy(w, r)
					return err
				}
				n, err := io.Copy(w, io.LimitReader(r, left+1))
				if left -= n; err == nil && left < 0 {
					err = fmt.Errorf("the archive expands past maxSize %d bytes", limit)
				}
				return err
			})
		})
		if err != nil {
			return Result{}, fmt.Errorf("extract %s: %w", src, err)
		}
	}
	return Result{Output: fmt.Sprintf("extracted %d files from %s to %s", files, src, dir)}, nil
}

// safeEntry returns an entry's name as a relative local path, or refuses it.
func safeEntry(name string) (string, error) {
	n := strings.ReplaceAll(name, `\`, "/")
	clean := path.Clean(n)
	if n == "" || strings.HasPrefix(n, "/") || clean == ".." || strings.HasPrefix(clean, "../") ||
		filepath.VolumeName(name) != "" || !fs.ValidPath(strings.TrimSuffix(clean, "/")) {
		return "", fmt.Errorf("%w %q: it would land outside the destination", ErrUnsafeEntry, name)
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", fmt.Errorf("%w %q: it has a \"..\" element", ErrUnsafeEntry, name)
		}
	}
	return filepath.FromSlash(clean), nil
}

// entries calls fn for each member of the archive, in order; a link or a
// special file is refused.
func (c *call) entries(src, form string, fn func(entry) error) error {
	f, err := c.root.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	if form == "zip" {
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		zr, err := zip.NewReader(f, fi.Size())
		if err != nil {
			return err
		}
		for _, zf := range zr.File {
			mode := zf.Mode()
			if !mode.IsRegular() && !mode.IsDir() {
				return fmt.Errorf("%w %q: a %s is not extracted", ErrUnsafeEntry, zf.Name, kindOf(mode))
			}
			e := entry{name: zf.Name, size: int64(zf.UncompressedSize64), dir: mode.IsDir(), open: func() (io.Reader, func() error, error) {
				r, err := zf.Open()
				if err != nil {
					return nil, nil, err
				}
				return r, r.Close, nil
			}}
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	}
	gz, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeDir:
		case tar.TypeXGlobalHeader:
			continue
		default:
			return fmt.Errorf("%w %q: a %s is not extracted", ErrUnsafeEntry, h.Name, kindOf(h.FileInfo().Mode()))
		}
		e := entry{name: h.Name, size: h.Size, dir: h.Typeflag == tar.TypeDir, open: func() (io.Reader, func() error, error) {
			return tr, func() error { return nil }, nil
		}}
		if err := fn(e); err != nil {
			return err
		}
	}
}

func kindOf(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeDevice != 0:
		return "device"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	}
	return "link or special file"
}
