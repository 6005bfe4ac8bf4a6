"""python -m evals [--fast] [--parallel N] [--policy offline|openai|foundry] [--simulate] [--journeys GLOB[,GLOB]] [--seed N] [--show failed|all]

Runs the journeys on the real stack (a `python -m local` per journey: web chat over HTTP, WhatsApp through the ACS
emulator, calls with speech through the media gateway, handoffs through the Durable orchestration) and prints a
table per journey and the totals (docs/evals.md). `--fast` runs them through the conversation core in this process
instead. With a model configured (AZURE_OPENAI_* or OPENAI_*), a model judges every transcript, and `--simulate`
has it play the customer. `--policy foundry` (AZURE_AI_PROJECT_ENDPOINT set) first syncs the journeys' scenarios to
the Foundry project as agent versions (idempotent), then runs the journeys with the Foundry policy. Exits 1 when a journey failed or a slot was asked twice, so a release script can gate on it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from contextlib import AsyncExitStack

from evals import foundry, journeys, model, report, runner
from evals.live import LiveDriver
from evals.rig import InProcessDriver, stack


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals", description=__doc__.splitlines()[0])
    parser.add_argument("--policy", choices=["offline", "openai", "foundry"], default="offline")
    parser.add_argument("--journeys", default="*/*.yaml", help="a glob under evals/journeys/, or several separated by commas (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="picks each line's paraphrase (default 0)")
    parser.add_argument("--fast", action="store_true", help="the conversation core in this process, not the stack")
    parser.add_argument("--parallel", type=int, default=3, metavar="N",
                        help="journeys run side by side, each on its own stack (default 3; calls run in real time)")
    parser.add_argument("--simulate", action="store_true", help="a model plays the customer (needs a model)")
    parser.add_argument("--no-judge", dest="judge", action="store_false", help="no model grades the transcripts")
    parser.add_argument("--show", choices=["none", "failed", "all"], default="none",
                        help="print transcripts of these journeys")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    try:
        chosen = [j for pattern in args.journeys.split(",") if pattern.strip() for j in journeys.load(pattern.strip())]
    except journeys.JourneyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    if args.policy == "foundry" and not foundry.configured(env):
        print("error: --policy foundry needs AZURE_AI_PROJECT_ENDPOINT, the Foundry project's endpoint "
              "(https://<account>.services.ai.azure.com/api/projects/<project>; docs/evals.md)", file=sys.stderr)
        return 2
    if not model.configured(env):
        if args.policy == "openai" or args.simulate:
            print("error: --policy openai and --simulate need AZURE_OPENAI_* or OPENAI_* set (docs/evals.md)",
                  file=sys.stderr)
            return 2
        print("no model configured (AZURE_OPENAI_* or OPENAI_*): scripted lines only, no judge", file=sys.stderr)
    started = time.monotonic()
    if args.policy == "foundry":
        try:
            synced = await foundry.sync_agents(env, {j.scenario for j in chosen})
        except Exception as exc:  # an unreachable project or a refused sign-in: nothing to evaluate against
            print(f"error: foundry sync: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
        print(foundry.described(synced), file=sys.stderr)
    async with AsyncExitStack() as cleanup:
        customer = judge = None
        if model.configured(env):
            if args.simulate:
                customer = model.SimulatedCustomer(env)
                cleanup.push_async_callback(customer.close)
            if args.judge:
                judge = model.Judge(env)
                cleanup.push_async_callback(judge.close)
        if args.fast:
            driver = InProcessDriver(await cleanup.enter_async_context(stack(args.policy)))
        else:
            driver = LiveDriver(args.policy, {**model.model_env(env), **foundry.foundry_env(env)})
            cleanup.callback(driver.close)
        def done(result: runner.Result) -> None:
            print(f"{result.journey.id}: {'ok' if result.success else 'FAILED'} ({result.seconds:.1f} s)",
                  file=sys.stderr, flush=True)

        results = await runner.run_all(driver, chosen, args.seed, customer, judge,
                                       1 if args.fast else args.parallel, done)
    for result in results:
        if args.show == "all" or (args.show == "failed" and (not result.success or result.reasked)):
            print(report.transcript(result) + "\n")
    print(report.table(results, args.policy))
    print(f"{'in-process' if args.fast else 'real stack'}, {len(results)} journeys in {time.monotonic() - started:.0f} s")
    return 0 if all(r.success and not r.reasked for r in results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
