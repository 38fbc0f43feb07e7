package ca

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// dirState is what a directory holds before Init or LoadOrInit touches it.
type dirState int

const (
	dirAbsent dirState = iota // does not exist
	dirEmpty                  // an empty directory
	dirHasCA                  // holds ca.crt or ca.key
	dirOther                  // holds other files only
)

func inspect(dir string) (dirState, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return dirAbsent, nil
	}
	if err != nil {
		return 0, err
	}
	if len(entries) == 0 {
		return dirEmpty, nil
	}
	for _, e := range entries {
		if e.Name() == CertFile || e.Name() == KeyFile {
			return dirHasCA, nil
		}
	}
	return dirOther, nil
}

// install writes c into a temporary directory beside dir and renames it to
// dir, so that dir appears complete or not at all. If dir is already taken
// the returned error wraps fs.ErrExist. If replaceEmpty is set, dir was an
// empty directory and is removed first so the rename can take its place.
func install(dir string, c *CA, replaceEmpty bool) error {
	certPEM, keyPEM, err := c.Marshal()
	if err != nil {
		return err
	}
	dir = filepath.Clean(dir)
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return fmt.Errorf("create parent directory: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temporary directory: %w", err)
	}
	installed := false
	defer func() {
		if !installed {
			os.RemoveAll(tmp)
		}
	}()
	if err := writeFileExcl(filepath.Join(tmp, KeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeFileExcl(filepath.Join(tmp, CertFile), certPEM, 0o644); err != nil {
		return err
	}
	if err := syncDir(tmp); err != nil {
		return err
	}
	if replaceEmpty {
		// Fails harmlessly if another process has filled dir meanwhile; the
		// rename below then reports that dir exists.
		_ = os.Remove(dir)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("move CA into place: %w", err)
	}
	installed = true
	return syncDir(parent)
}

// writeFileExcl creates path, which must not exist, with data and perm, and
// flushes it to disk.
func writeFileExcl(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	return finishFile(f, data, perm)
}

// writeFileAtomic replaces path with data and perm, so that readers see the
// old or the new content, never a mix.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temporary file for %s: %w", path, err)
	}
	if err := finishFile(f, data, perm); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return nil
}

func finishFile(f *os.File, data []byte, perm fs.FileMode) error {
	// Chmod because the umask may have narrowed perm, and CreateTemp ignores it.
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", f.Name(), err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", f.Name(), err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
