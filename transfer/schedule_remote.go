package transfer

import (
	"path"

	"github.com/jlaffaye/ftp"
)

// The directory operations of partner sessions a poll schedule uses
// (remoteDir).

func (s *sftpSession) list(dir string) (map[string]remoteFile, error) {
	infos, err := s.client.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	files := map[string]remoteFile{}
	for _, fi := range infos {
		if fi.Mode().IsRegular() {
			files[fi.Name()] = remoteFile{size: fi.Size(), mtime: fi.ModTime()}
		}
	}
	return files, nil
}

func (s *sftpSession) remove(name string) error { return s.client.Remove(name) }

// rename moves from to to, creating to's directory; it does not replace
// an existing file (SFTP's own rename), so a file moved already is kept.
func (s *sftpSession) rename(from, to string) error {
	if err := s.client.MkdirAll(path.Dir(to)); err != nil {
		return err
	}
	return s.client.Rename(from, to)
}

func (s *ftpSession) list(dir string) (map[string]remoteFile, error) {
	entries, err := s.c.List(dir)
	if err != nil {
		return nil, err
	}
	files := map[string]remoteFile{}
	for _, e := range entries {
		if e.Type == ftp.EntryTypeFile {
			files[path.Base(e.Name)] = remoteFile{size: int64(e.Size), mtime: e.Time}
		}
	}
	return files, nil
}

func (s *ftpSession) remove(name string) error { return s.c.Delete(name) }

func (s *ftpSession) rename(from, to string) error {
	_ = s.c.MakeDir(path.Dir(to)) // exists already, most often
	return s.c.Rename(from, to)
}
