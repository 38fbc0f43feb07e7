package gossip

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"
)

// newStdLogger adapts slog to the *log.Logger memberlist wants. memberlist
// writes lines such as "[WARN] memberlist: Was able to connect to ...";
// the bracketed level picks the slog level and is cut from the message.
func newStdLogger(l *slog.Logger) *log.Logger {
	return log.New(slogWriter{l}, "", 0)
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	msg := string(bytes.TrimRight(p, "\n"))
	lvl := slog.LevelInfo
	if strings.HasPrefix(msg, "[") {
		if end := strings.IndexByte(msg, ']'); end > 0 {
			switch msg[1:end] {
			case "DEBUG", "TRACE":
				lvl = slog.LevelDebug
			case "WARN":
				lvl = slog.LevelWarn
			case "ERR", "ERROR":
				lvl = slog.LevelError
			}
			msg = strings.TrimSpace(msg[end+1:])
		}
	}
	msg = strings.TrimPrefix(msg, "memberlist: ")
	if w.l.Enabled(context.Background(), lvl) {
		w.l.LogAttrs(context.Background(), lvl, msg, slog.String("component", "memberlist"))
	}
	return len(p), nil
}
