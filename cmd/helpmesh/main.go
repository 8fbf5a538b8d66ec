// Command helpmesh runs a helpline centre's node and talks to one.
//
//	helpmesh demo [--centres N] [--dir DIR]
//	helpmesh init --dir DIR --centre ID [--name NAME] [--http ADDR] [--p2p ADDR] [--gossip ADDR]
//	helpmesh run --dir DIR [--join MULTIADDR]
//	helpmesh centre admit --dir MEMBER_DIR (--from NEW_DIR | --id ID --name NAME --peer-id P --addr MA --gossip HOST:PORT)
//	helpmesh centre remove --dir MEMBER_DIR --id ID
//	helpmesh gossip-key rotate --dir MEMBER_DIR
//	helpmesh status --dir DIR [--json]
//	helpmesh health [--url http://127.0.0.1:8080/readyz]
//	helpmesh up --dir DIR --centre ID (--bootstrap | --join-via URL) --token-file F
//	helpmesh chat --server URL [--lang nb]
//	helpmesh volunteer --server URL --id ID --password PASSWORD
//	helpmesh i18n check [--data DIR]
//	helpmesh simulate [--html FILE] [--json FILE] SCENARIO | --example
//
// The binary only parses flags and wires packages together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `helpmesh joins a helpline's centres into one network.

Commands:
  demo            run a whole federation on loopback in one process
  init            create a centre's data directory
  run             run a centre
  centre admit    admit a new centre to the federation (coordinator)
  centre remove   remove a centre from the federation (coordinator)
  gossip-key rotate  give the federation a new gossip key (coordinator; after removing a centre)
  status          show the federation as a centre sees it
  health          probe a centre's /readyz (for container health checks)
  up              init, self-admit and run a centre (trusted private networks, e.g. compose)
  chat            chat at a centre as a visitor, in the terminal
  volunteer       sign in at your centre as a volunteer, in the terminal
  i18n check      list the pages' catalogues' missing and extra texts (exit 1 if a shipped one lacks any)
  simulate        replay a scenario (a night, a week) through helpmesh's router: federation, isolated, pooled

Run 'helpmesh COMMAND -h' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			// -h or --help: the flag package has printed the usage.
			return
		}
		fmt.Fprintln(os.Stderr, "helpmesh:", err)
		os.Exit(1)
	}
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		args = []string{"demo"}
	}
	switch args[0] {
	case "demo":
		return cmdDemo(ctx, args[1:], stdout, stderr)
	case "init":
		return cmdInit(args[1:], stdout)
	case "run":
		return cmdRun(ctx, args[1:], stderr)
	case "centre", "center":
		if len(args) < 2 {
			return fmt.Errorf("centre: want 'admit' or 'remove'")
		}
		switch args[1] {
		case "admit":
			return cmdCentreAdmit(ctx, args[2:], stdout)
		case "remove":
			return cmdCentreRemove(ctx, args[2:], stdout)
		}
		return fmt.Errorf("centre: unknown subcommand %q (want admit or remove)", args[1])
	case "gossip-key":
		return cmdGossipKey(ctx, args[1:], stdout)
	case "health":
		return cmdHealth(ctx, args[1:], stdout)
	case "up":
		return cmdUp(ctx, args[1:], stdout, stderr)
	case "status":
		return cmdStatus(ctx, args[1:], stdout)
	case "chat":
		return cmdChat(ctx, args[1:], os.Stdin, stdout)
	case "volunteer":
		return cmdVolunteer(ctx, args[1:], os.Stdin, stdout)
	case "i18n":
		if len(args) < 2 || args[1] != "check" {
			return fmt.Errorf("i18n: want 'check'")
		}
		return cmdI18nCheck(args[2:], stdout)
	case "simulate":
		return cmdSimulate(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n\n%s", args[0], usage)
}
