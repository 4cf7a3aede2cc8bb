package api

import (
	"context"
	"io"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
)

// Upgrade switches the HTTP connection of an attach or exec-start request to a raw stream: the
// server writes "101 UPGRADED" (or 200 for clients that did not ask to upgrade) and returns the
// hijacked connection. A backend calls it only after it validated the request, so that errors
// such as "No such container" still reach the client as ordinary HTTP errors. CloseWrite on
// the returned stream half-closes it (the client sees EOF on its output).
type Upgrade func() (RawStream, error)

// RawStream is a hijacked client connection.
type RawStream interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// AttachOptions are the query parameters of POST /containers/{id}/attach.
type AttachOptions struct {
	Stdin, Stdout, Stderr bool
	Stream, Logs          bool
	DetachKeys            string
}

// LogsOptions are the query parameters of GET /containers/{id}/logs.
type LogsOptions struct {
	Stdout, Stderr bool
	Follow         bool
	Timestamps     bool
	// Tail is "all" or a number of lines.
	Tail         string
	Since, Until time.Time
}

// ExecStartOptions are the body of POST /exec/{id}/start.
type ExecStartOptions struct {
	Detach      bool
	Tty         bool
	ConsoleSize *[2]uint
}

// ArchiveOptions are the query parameters of PUT /containers/{id}/archive.
type ArchiveOptions struct {
	NoOverwriteDirNonDir bool
	CopyUIDGID           bool
}

// ContainerBackend is what the container and exec endpoints need from the daemon. Errors are
// classified with github.com/containerd/errdefs.
type ContainerBackend interface {
	ContainerCreate(ctx context.Context, name string, cfg *container.Config, hc *container.HostConfig, nc *network.NetworkingConfig) (container.CreateResponse, error)
	ContainerStart(ctx context.Context, id string) error
	// ContainerStop sends signal (the container's StopSignal when empty), waits timeout seconds
	// (the container's StopTimeout or 10 when nil), then kills.
	ContainerStop(ctx context.Context, id string, signal string, timeout *int) error
	ContainerRestart(ctx context.Context, id string, signal string, timeout *int) error
	ContainerKill(ctx context.Context, id string, signal string) error
	ContainerPause(ctx context.Context, id string) error
	ContainerUnpause(ctx context.Context, id string) error
	// ContainerWait validates and registers the wait, then returns a channel that yields one
	// response when the condition is met; the server flushes its headers in between.
	ContainerWait(ctx context.Context, id string, condition container.WaitCondition) (<-chan container.WaitResponse, error)
	ContainerRemove(ctx context.Context, id string, force, removeVolumes bool) error
	ContainerList(ctx context.Context, all bool, limit int, size bool, filters Filters) ([]container.Summary, error)
	ContainerInspect(ctx context.Context, id string, size bool) (container.InspectResponse, error)
	// ContainerAttach validates, calls upgrade, and pipes the container's streams until they
	// end or the client detaches.
	ContainerAttach(ctx context.Context, id string, opts AttachOptions, upgrade Upgrade) error
	// ContainerLogs returns the log stream, framed for a non-TTY container (multiplexed) and raw
	// for a TTY one, which tty reports.
	ContainerLogs(ctx context.Context, id string, opts LogsOptions) (stream io.ReadCloser, tty bool, err error)
	ContainerResize(ctx context.Context, id string, height, width uint16) error
	ContainerTop(ctx context.Context, id string, psArgs string) (container.TopResponse, error)
	// ContainerStats calls emit once (stream false) or every second until ctx ends.
	ContainerStats(ctx context.Context, id string, stream bool, emit func(container.StatsResponse) error) error
	ContainerRename(ctx context.Context, id, newName string) error
	ContainerUpdate(ctx context.Context, id string, update container.UpdateConfig) (container.UpdateResponse, error)
	ContainerChanges(ctx context.Context, id string) ([]container.FilesystemChange, error)
	ContainerExport(ctx context.Context, id string, w io.Writer) error
	ContainerStatPath(ctx context.Context, id, path string) (container.PathStat, error)
	ContainerArchive(ctx context.Context, id, path string) (io.ReadCloser, container.PathStat, error)
	ContainerExtract(ctx context.Context, id, path string, opts ArchiveOptions, r io.Reader) error
	ContainersPrune(ctx context.Context, filters Filters) (container.PruneReport, error)

	ExecCreate(ctx context.Context, id string, req container.ExecCreateRequest) (string, error)
	ExecStart(ctx context.Context, execID string, opts ExecStartOptions, upgrade Upgrade) error
	ExecInspect(ctx context.Context, execID string) (container.ExecInspectResponse, error)
	ExecResize(ctx context.Context, execID string, height, width uint16) error
}
