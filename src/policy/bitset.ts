/** A fixed-size set of small integers (class indexes), 32 per word. */
export class Bitset {
  readonly words: Uint32Array;

  constructor(readonly size: number) {
    this.words = new Uint32Array((size + 31) >>> 5);
  }

  static full(size: number): Bitset {
    const b = new Bitset(size);
    b.words.fill(0xffffffff);
    const extra = b.words.length * 32 - size;
    if (extra > 0) b.words[b.words.length - 1] = 0xffffffff >>> extra;
    return b;
  }

  add(i: number): void {
    const w = i >>> 5;
    this.words[w] = (this.words[w] as number) | (1 << (i & 31));
  }

  has(i: number): boolean {
    return ((this.words[i >>> 5] as number) & (1 << (i & 31))) !== 0;
  }

  orWith(other: Bitset): void {
    const w = this.words;
    const o = other.words;
    for (let i = 0; i < w.length; i++) w[i] = (w[i] as number) | (o[i] as number);
  }

  forEach(fn: (i: number) => void): void {
    const w = this.words;
    for (let wi = 0; wi < w.length; wi++) {
      let word = w[wi] as number;
      while (word !== 0) {
        const bit = word & -word;
        fn((wi << 5) + (31 - Math.clz32(bit)));
        word ^= bit;
      }
    }
  }
}
