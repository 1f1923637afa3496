package tasks

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestArchiveExtract: ARCHIVE then EXTRACT, zip and tar.gz, of a file and
// of a directory; each run twice, and rerun after a crash left a partial
// temporary archive.
func TestArchiveExtract(t *testing.T) {
	for _, ext := range []string{"zip", "tar.gz"} {
		t.Run(ext, func(t *testing.T) {
			h := newHome(t)
			h.put("in/report.csv", "a,b\n1,2\n")
			h.put("in/batch/one.txt", "1")
			h.put("in/batch/sub/two.txt", "2")
			f := facts("in/report.csv")
			out := "archive/#DATE#/#TRUEFILENAME#." + ext
			h.put("archive/20261201/.report.csv."+ext+".42.tmp", "partial")
			for range 2 {
				if r := h.run("ARCHIVE", map[string]any{"path": out}, f); r.Path != "" {
					t.Fatalf("ARCHIVE moved the chain: %+v", r)
				}
			}
			h.run("ARCHIVE", map[string]any{"path": "archive/batch." + ext, "file": "in/batch"}, f)
			h.noTemps()

			for range 2 {
				h.run("EXTRACT", map[string]any{"path": "restored"}, facts("archive/20261201/report.csv."+ext))
			}
			if got := h.read("restored/report.csv"); got != "a,b\n1,2\n" {
				t.Errorf("extracted %q", got)
			}
			h.fail("EXTRACT", map[string]any{"path": "small", "maxSize": 1}, facts("archive/batch."+ext), "expands past maxSize 1 bytes")
			if h.exists("small") {
				t.Error("an archive over maxSize wrote entries")
			}
			h.run("EXTRACT", map[string]any{"maxSize": 2}, facts("archive/batch."+ext))
			if h.read("archive/batch/one.txt") != "1" || h.read("archive/batch/sub/two.txt") != "2" {
				t.Error("the directory was not restored")
			}
			h.noTemps()
		})
	}
}

// TestExtractRefusesEscapes: archives with "../", absolute names, links
// out and hard links are refused whole (not even their good entries are
// written), with an error naming the entry.
func TestExtractRefusesEscapes(t *testing.T) {
	type member struct {
		name, link string
		typ        byte
	}
	good := member{name: "ok.txt", typ: tar.TypeReg}
	cases := []struct {
		name string
		bad  member
		want string
	}{
		{"dot-dot", member{name: "../evil.txt", typ: tar.TypeReg}, `"../evil.txt": it would land outside`},
		{"dot-dot inside", member{name: "a/../../evil.txt", typ: tar.TypeReg}, `"a/../../evil.txt"`},
		{"absolute", member{name: "/etc/evil", typ: tar.TypeReg}, `"/etc/evil": it would land outside`},
		{"symlink out", member{name: "link", link: "/etc", typ: tar.TypeSymlink}, `"link": a symbolic link is not extracted`},
		{"hard link", member{name: "hard", link: "../../etc/passwd", typ: tar.TypeLink}, `"hard": a link or special file is not extracted`},
	}
	for _, tc := range cases {
		for _, ext := range []string{"zip", "tar.gz"} {
			if ext == "zip" && tc.bad.typ == tar.TypeLink {
				continue // zip has no hard links
			}
			t.Run(tc.name+"/"+ext, func(t *testing.T) {
				h := newHome(t)
				var buf bytes.Buffer
				members := []member{good, tc.bad}
				if ext == "zip" {
					zw := zip.NewWriter(&buf)
					for _, m := range members {
						fh := &zip.FileHeader{Name: m.name, Method: zip.Store}
						body := "x"
						if m.typ == tar.TypeSymlink {
							fh.SetMode(os.ModeSymlink | 0o777)
							body = m.link
						}
						w, err := zw.CreateHeader(fh)
						if err != nil {
							t.Fatal(err)
						}
						w.Write([]byte(body))
					}
					zw.Close()
				} else {
					gz := gzip.NewWriter(&buf)
					tw := tar.NewWriter(gz)
					for _, m := range members {
						hd := &tar.Header{Name: m.name, Linkname: m.link, Typeflag: m.typ, Mode: 0o644}
						if m.typ == tar.TypeReg {
							hd.Size = 1
						}
						if err := tw.WriteHeader(hd); err != nil {
							t.Fatal(err)
						}
						if m.typ == tar.TypeReg {
							tw.Write([]byte("x"))
						}
					}
					tw.Close()
					gz.Close()
				}
				h.put("in/bad."+ext, buf.String())
				err := h.fail("EXTRACT", map[string]any{"path": "in/x"}, facts("in/bad."+ext), tc.want)
				if !errors.Is(err, ErrUnsafeEntry) {
					t.Errorf("%v is not ErrUnsafeEntry", err)
				}
				if h.exists("in/x/ok.txt") || h.exists("in/x") {
					t.Error("a refused archive wrote its good entry")
				}
				if h.exists("evil.txt") || h.exists("../evil.txt") {
					t.Error("an entry escaped")
				}
			})
		}
	}
	if _, err := os.Stat(filepath.Join("/etc", "evil")); err == nil {
		t.Error("/etc/evil exists")
	}
}
