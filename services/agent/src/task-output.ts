// One stream (stdout or stderr) of a task's output as text: bytes decoded as UTF-8 without
// splitting a character across chunks, and the task's secrets masked, even when split.
import { StringDecoder } from 'node:string_decoder'
import { SecretMasker } from '../../../shared/secrets/index.js'

export class TaskText {
  private readonly decoder = new StringDecoder('utf8')
  private readonly masker: SecretMasker

  constructor(secrets: Iterable<string>) {
    this.masker = new SecretMasker(secrets)
  }

  /** The text of a chunk that is safe to pass on now. */
  push(chunk: Buffer): string {
    return this.masker.push(this.decoder.write(chunk))
  }

  /** What is still held, at the end of the stream. */
  end(): string {
    return this.masker.push(this.decoder.end()) + this.masker.flush()
  }
}
