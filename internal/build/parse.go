package build

import (
	"bytes"
	"fmt"
	"io"

	"github.com/containerd/errdefs"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
)

// maxDockerfileSize bounds what the parser is fed.
const maxDockerfileSize = 4 << 20

// Dockerfile is a parsed Dockerfile.
type Dockerfile struct {
	Stages   []instructions.Stage
	MetaArgs []instructions.ArgCommand
	// Escape is the escape token (\ or `), used for variable expansion.
	Escape rune
}

// ParseDockerfile parses and type-checks a Dockerfile. Errors are invalid-argument errors that
// carry the line.
func ParseDockerfile(r io.Reader) (*Dockerfile, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxDockerfileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read Dockerfile: %w", err)
	}
	if len(b) > maxDockerfileSize {
		return nil, errdefs.ErrInvalidArgument.WithMessage("Dockerfile too large")
	}
	res, err := parser.Parse(bytes.NewReader(b))
	if err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("failed to parse Dockerfile: %v", err))
	}
	stages, meta, err := instructions.Parse(res.AST, linter.New(&linter.Config{SkipAll: true}))
	if err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("failed to parse Dockerfile: %v", err))
	}
	if len(stages) == 0 {
		return nil, errdefs.ErrInvalidArgument.WithMessage("the Dockerfile (or its first instruction) must begin with FROM")
	}
	return &Dockerfile{Stages: stages, MetaArgs: meta, Escape: res.EscapeToken}, nil
}

// parseLine parses one instruction (an ONBUILD trigger).
func parseLine(line string) (instructions.Command, error) {
	res, err := parser.Parse(bytes.NewReader([]byte(line)))
	if err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("parse %q: %v", line, err))
	}
	if len(res.AST.Children) != 1 {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("parse %q: expected one instruction", line))
	}
	cmd, err := instructions.ParseCommand(res.AST.Children[0])
	if err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("parse %q: %v", line, err))
	}
	return cmd, nil
}
