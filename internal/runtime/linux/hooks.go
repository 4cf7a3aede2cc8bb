package linux

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// runHooks runs OCI hooks in order with the container state on stdin. Hooks are host commands
// chosen by whoever wrote the bundle's config; they run with the runtime's privileges, which is
// what the OCI spec defines.
func runHooks(ctx context.Context, hooks []specs.Hook, state specs.State) error {
	if len(hooks) == 0 {
		return nil
	}
	in, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("encode hook state: %w", err)
	}
	for _, h := range hooks {
		if err := runHook(ctx, h, in); err != nil {
			return err
		}
	}
	return nil
}

func runHook(ctx context.Context, h specs.Hook, in []byte) error {
	if h.Timeout != nil {
		if *h.Timeout <= 0 {
			return fmt.Errorf("hook %s: timeout must be positive", h.Path)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(*h.Timeout)*time.Second)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, h.Path)
	if len(h.Args) > 0 {
		cmd.Args = h.Args
	}
	cmd.Env = h.Env
	cmd.Stdin = bytes.NewReader(in)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("hook %s: %w: %s", h.Path, err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}
