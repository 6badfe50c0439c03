// Follows a run's telemetry stream, reconnecting on its own and resuming after the last seq seen.
import { ConnectError } from "@connectrpc/connect";
import type { SubscribeResponse } from "../gen/onthefly/v1/telemetry_pb.js";
import { LifecycleKind } from "../gen/onthefly/v1/telemetry_pb.js";
import { isRetryable } from "./client.js";

/** Connection state of a follower, for people: live, reconnecting (with why), ended (run over) or failed. */
export type Connection =
  | { state: "connecting" }
  | { state: "live" }
  | { state: "reconnecting"; attempt: number; error: string }
  | { state: "ended" }
  | { state: "failed"; error: string };

/** What a follower needs of a client: a resumable subscription. */
export interface Subscribable {
  subscribe(afterSeq: bigint, signal: AbortSignal): AsyncIterable<SubscribeResponse>;
}

export interface FollowerOptions {
  /** Resume after this seq (0: the oldest event the run still holds). */
  afterSeq?: bigint;
  /** Delays between reconnect attempts in ms; the last one repeats. */
  backoffMs?: number[];
  /** Called before each reconnect; may return a new seq to resume after (e.g. 0 for a new run at the same address). */
  beforeReconnect?: () => Promise<bigint | undefined>;
}

/**
 * Calls `onFrame` for every frame, in order, and `onConnection` on each state change. A stream that
 * ends after the run's final lifecycle event ends the follower; any other end or failure reconnects
 * with `after_seq` = the last seq received, so the server sends what was missed or reports a gap.
 */
export class TelemetryFollower {
  private readonly abort = new AbortController();
  private seq: bigint;
  private done?: Promise<void>;
  connection: Connection = { state: "connecting" };

  constructor(
    private readonly source: Subscribable,
    private readonly onFrame: (frame: SubscribeResponse) => void,
    private readonly onConnection: (c: Connection) => void = () => {},
    private readonly options: FollowerOptions = {},
  ) {
    this.seq = options.afterSeq ?? 0n;
  }

  /** The last seq received (what a reconnect resumes after). */
  get lastSeq(): bigint {
    return this.seq;
  }

  /** Starts following (after `afterSeq`, when given); the promise settles when the follower ends or is stopped. */
  start(afterSeq?: bigint): Promise<void> {
    if (!this.done && afterSeq !== undefined) this.seq = afterSeq;
    this.done ??= this.loop();
    return this.done;
  }

  /** Stops following and closes the stream; safe to call more than once. */
  stop(): Promise<void> {
    this.abort.abort();
    return this.done ?? Promise.resolve();
  }

  private setConnection(c: Connection): void {
    this.connection = c;
    this.onConnection(c);
  }

  private async loop(): Promise<void> {
    const backoff = this.options.backoffMs ?? [200, 500, 1000, 2000];
    let attempt = 0;
    const signal = this.abort.signal;
    while (!signal.aborted) {
      let ended = false;
      try {
        for await (const frame of this.source.subscribe(this.seq, signal)) {
          if (this.connection.state !== "live") this.setConnection({ state: "live" });
          attempt = 0;
          for (const e of frame.events) {
            if (e.seq > this.seq) this.seq = e.seq;
            const kind = e.payload.case === "lifecycle" ? e.payload.value.kind : undefined;
            if (kind === LifecycleKind.FINISHED || kind === LifecycleKind.FAILED) ended = true;
          }
          this.onFrame(frame);
        }
        if (ended) {
          this.setConnection({ state: "ended" });
          return;
        }
        if (signal.aborted) return;
        // The server closed the stream without a final event (shutting down, or restarted): retry.
        throw new Error("the stream closed before the run's final event");
      } catch (err) {
        if (signal.aborted) return;
        if (ended) {
          this.setConnection({ state: "ended" });
          return;
        }
        const message = err instanceof ConnectError ? err.rawMessage || err.message : String((err as Error)?.message ?? err);
        if (!isRetryable(err)) {
          this.setConnection({ state: "failed", error: message });
          return;
        }
        attempt += 1;
        this.setConnection({ state: "reconnecting", attempt, error: message });
        await delay(backoff[Math.min(attempt - 1, backoff.length - 1)], signal);
        if (signal.aborted) return;
        try {
          const restart = await this.options.beforeReconnect?.();
          if (restart !== undefined) this.seq = restart;
        } catch {
          // Still unreachable: the subscribe below fails too and we back off again.
        }
      }
    }
  }
}

/** Resolves after ms, or at once when signal aborts. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
