package pbxlab

import (
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// process is a started tool that one goroutine waits for, so both the
// readiness checks (has it died?) and Stop can observe its end.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set before done closes

	once    sync.Once
	stopErr error
}

func startProcess(cmd *exec.Cmd) (*process, error) {
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop signals the process by its PID and waits up to grace for it to end;
// then it kills the process group (the process was started with Setpgid,
// its group id is its PID). A process that already ended on its own
// counts as stopped only if it exited 0.
// errKilled: the process outlived its grace after the signal and was
// killed.
var errKilled = errors.New("killed after the grace period")

func (p *process) stop(sig syscall.Signal, grace time.Duration) error {
	p.once.Do(func() {
		select {
		case <-p.done:
			if p.err != nil {
				p.stopErr = fmt.Errorf("ended before stop: %w", p.err)
			}
			return
		default:
		}
		if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			p.stopErr = fmt.Errorf("signal pid %d: %w", p.cmd.Process.Pid, err)
		}
		select {
		case <-p.done:
			// Exit status after our own signal: 0 for a clean Kamailio or
			// baresip; a "signal: terminated" status is also ours.
			var exit *exec.ExitError
			if p.err != nil && !(errors.As(p.err, &exit) && exit.Sys().(syscall.WaitStatus).Signal() == sig) {
				p.stopErr = fmt.Errorf("exit after %v: %w", sig, p.err)
			}
		case <-time.After(grace):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
			p.stopErr = fmt.Errorf("pid %d ignored %v for %v; killed its group: %w", p.cmd.Process.Pid, sig, grace, errKilled)
		}
	})
	return p.stopErr
}
