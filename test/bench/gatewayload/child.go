package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// child is a process the harness started: the upstream, the proxy or the
// mcpmesh node.
type child struct {
	name    string
	cmd     *exec.Cmd
	done    chan struct{}
	cleanup func() error
}

func newChild(name string, cmd *exec.Cmd, cleanup func() error) *child {
	c := &child{name: name, cmd: cmd, done: make(chan struct{}), cleanup: cleanup}
	go func() {
		cmd.Wait()
		if c.cleanup != nil {
			c.cleanup()
		}
		close(c.done)
	}()
	return c
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to 10s for the process to exit, then
// kills it.
func (c *child) stop() {
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
}

// listeningPrefix starts the line a role prints once it serves.
const listeningPrefix = "listening "

// startRole re-executes this program as the given role, its stderr going
// to logPath, and returns the process and the address it listens on (from
// its first stdout line).
func startRole(ctx context.Context, logPath, role string, args ...string) (*child, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", fmt.Errorf("find this program to start the %s: %w", role, err)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, "", fmt.Errorf("%s log: %w", role, err)
	}
	cmd := exec.Command(self, append([]string{"-role", role}, args...)...)
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, "", err
	}
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, "", fmt.Errorf("start the %s: %w", role, err)
	}
	c := newChild(role, cmd, logf.Close)
	lines := make(chan string, 1)
	go func() {
		r := bufio.NewReader(out)
		line, _ := r.ReadString('\n')
		lines <- line
		io.Copy(io.Discard, r)
	}()
	select {
	case line := <-lines:
		addr, ok := strings.CutPrefix(strings.TrimSpace(line), listeningPrefix)
		if !ok {
			c.stop()
			return nil, "", fmt.Errorf("the %s printed %q, want %q<address>; its log:\n%s", role, line, listeningPrefix, logTail(logPath, 20))
		}
		return c, addr, nil
	case <-time.After(15 * time.Second):
	case <-ctx.Done():
	}
	c.stop()
	return nil, "", fmt.Errorf("the %s did not start listening within 15s; its log:\n%s", role, logTail(logPath, 20))
}

// serveRole serves h on a loopback port, announces the address on stdout
// for startRole, and serves until SIGTERM or SIGINT. connState, if not
// nil, is the server's ConnState hook.
func serveRole(ctx context.Context, h http.Handler, connState func(net.Conn, http.ConnState)) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ConnState: connState}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Printf("%s%s\n", listeningPrefix, ln.Addr())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Close, not Shutdown: legacy clients hold a GET stream open, and the
	// harness is done with every request by now.
	return srv.Close()
}
