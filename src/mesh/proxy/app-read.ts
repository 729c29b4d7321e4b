import type net from "node:net";

/** Where every app connection's reads land before they are copied out (reads never overlap). */
const READ_AREA = Buffer.allocUnsafe(64 * 1024);

/**
 * The `onread` option of a connection to the app: bytes are read into one shared area and handed
 * to `onData` as a copy of exactly what arrived, without a stream 'data' event or a fresh 64 KiB
 * allocation per read. The copy matters: a write of it may still be queued when the next read
 * reuses the area.
 */
export function appReads(onData: (chunk: Buffer) => void): net.OnReadOpts {
  return {
    buffer: READ_AREA,
    callback: (bytes: number, area: Uint8Array) => {
      onData(Buffer.from(area.subarray(0, bytes)));
      return true;
    },
  };
}
