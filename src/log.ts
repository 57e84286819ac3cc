// The process logger: pino JSON on stdout, one object per line.
import { pino, type Logger } from 'pino';

export function createLogger(level: string): Logger {
  return pino({ level, base: { service: 'longshore' }, timestamp: pino.stdTimeFunctions.isoTime });
}
