// containerd's own snapshotter test suite (snapshots/testsuite), run against a server of
// containerd's Snapshots gRPC API through containerd's proxy client (snapshots/proxy): the
// client containerd itself uses for a [proxy_plugins.NAME] type = "snapshot" entry.
//
// For every case the suite makes a fresh root; this file starts `sh -c "$SERVE"` with ROOT (that
// root) and ADDRESS (a socket path) in its environment, dials the socket, and on the case's
// cleanup sends the server SIGTERM, which must make it exit 0 and remove its socket. What the
// server writes is logged as the case's output. Build it in GOPATH mode, with no network, against
// Debian's golang-github-containerd-containerd-dev:
//
//	GO111MODULE=off GOPATH=$DIR/gopath:/usr/share/gocode go test -c -o suite.test pydocksuite
//	./suite.test -test.root -test.v -serve 'exec pydock --root "$ROOT" snapshotter serve --address "$ADDRESS" --storage overlay'
package pydocksuite

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/log"
	"github.com/containerd/containerd/pkg/testutil"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"github.com/containerd/containerd/snapshots/testsuite"
	"google.golang.org/grpc"
)

var (
	serve     = flag.String("serve", "", "shell command serving the API at $ADDRESS with its state in $ROOT")
	socketDir = flag.String("socket-dir", "", "where sockets go (default: beside each case's root); "+
		"a unix socket path must fit in 108 bytes")
	name    = flag.String("name", "pydock", "the snapshotter name requests carry (the proxy plugin's name)")
	timeout = flag.Duration("start-timeout", 30*time.Second, "how long a server may take to listen")
	// Longer than a server may rightly take: it lets calls under way finish (pydock's: 10s).
	stopTimeout = flag.Duration("stop-timeout", 20*time.Second, "how long a server may take to exit on SIGTERM")
)

// startServer is the suite's snapshotterFn: a new server on root, and the cleanup that stops it.
func startServer(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
	dir := filepath.Dir(root) // the case's own temporary directory, unique per case
	sock := filepath.Join(dir, "snapshotter.sock")
	if *socketDir != "" {
		sock = filepath.Join(*socketDir, filepath.Base(dir)+".sock")
	}
	// A file, not a pipe: Wait would wait for a pipe's every writer, a server's children too.
	output, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, nil, err
	}
	defer output.Close() // the server has its own descriptor
	serverSaid := func() string {
		out, _ := os.ReadFile(output.Name())
		return strings.TrimSpace(string(out))
	}
	cmd := exec.Command("sh", "-c", *serve)
	cmd.Env = append(os.Environ(), "ROOT="+root, "ADDRESS="+sock)
	cmd.Stdout, cmd.Stderr = output, output
	// No process group of its own: whoever runs this binary kills one group, servers included,
	// if the binary itself has to be killed.
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	stop := func() error {
		defer func() {
			if out := serverSaid(); out != "" {
				for _, line := range strings.Split(out, "\n") {
					log.G(ctx).Info("server: " + line)
				}
			}
		}()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				return fmt.Errorf("server on SIGTERM: %v, expected exit status 0", err)
			}
		case <-time.After(*stopTimeout):
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("server still running %s after SIGTERM: killed", *stopTimeout)
		}
		if _, err := os.Lstat(sock); err == nil {
			return fmt.Errorf("server exited but left its socket %s", sock)
		}
		return nil
	}

	// The server listens when its socket appears; until then, fail early if it exits.
	for deadline := time.Now().Add(*timeout); ; {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case err := <-exited:
			return nil, nil, fmt.Errorf("server exited before listening (%v): %s", err, serverSaid())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("no socket at %s after %s (%v)", sock, *timeout, stop())
		}
	}
	dialCtx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	conn, err := grpc.DialContext(dialCtx, "unix://"+sock, grpc.WithInsecure(), grpc.WithBlock(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}))
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %v (%v)", sock, err, stop())
	}
	sn := proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), *name)
	return sn, func() error {
		conn.Close()
		return stop()
	}, nil
}

func TestSnapshotterSuite(t *testing.T) {
	if *serve == "" {
		t.Fatal("-serve CMD is required")
	}
	testutil.RequiresRoot(t) // needs -test.root: the suite mounts what the server returns
	testsuite.SnapshotterSuite(t, "Pydock", startServer)
}
