package daemon

import (
	"context"

	"github.com/berth-dev/berth/internal/api"
	"github.com/containerd/errdefs"
	mcontainer "github.com/moby/moby/api/types/container"
)

func notYet(what string) error {
	return errdefs.ErrNotImplemented.WithMessage(what + " is not implemented in berth yet")
}

// ContainerUpdate changes resource limits of a container.
func (d *Daemon) ContainerUpdate(ctx context.Context, ref string, u mcontainer.UpdateConfig) (mcontainer.UpdateResponse, error) {
	return mcontainer.UpdateResponse{}, notYet("container update")
}

var _ api.ContainerBackend = (*Daemon)(nil)
