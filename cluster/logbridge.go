package cluster

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// logWriter routes the text logs of raft (hclog) and memberlist (std log)
// into the node's slog logger: their warnings and errors as such, their
// chatter (info and below) at debug, so that the node's own lines tell the
// story at info.
type logWriter struct {
	log       *slog.Logger
	component string
}

func (w logWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		msg := strings.TrimSpace(string(line))
		level := slog.LevelInfo
		for prefix, l := range map[string]slog.Level{"[TRACE]": slog.LevelDebug - 4, "[DEBUG]": slog.LevelDebug, "[INFO]": slog.LevelInfo, "[WARN]": slog.LevelWarn, "[ERR]": slog.LevelError, "[ERROR]": slog.LevelError} {
			if strings.HasPrefix(msg, prefix) {
				level, msg = l, strings.TrimSpace(strings.TrimPrefix(msg, prefix))
				break
			}
		}
		if level == slog.LevelInfo {
			level = slog.LevelDebug
		}
		msg = strings.TrimPrefix(msg, w.component+": ")
		w.log.Log(context.Background(), level, msg, "component", w.component)
	}
	return len(p), nil
}

func newHCLogger(l *slog.Logger, component string) hclog.Logger {
	level := hclog.Warn
	if l.Enabled(context.Background(), slog.LevelDebug) {
		level = hclog.Debug
	}
	return hclog.New(&hclog.LoggerOptions{Name: component, Output: logWriter{l, component}, Level: level, DisableTime: true})
}

func newStdLogger(l *slog.Logger, component string) *log.Logger {
	return log.New(logWriter{l, component}, "", 0)
}
