package manifest

import "os"

func osMkdirTemp() (string, error) { return os.MkdirTemp("", "manifest-test-ca") }
