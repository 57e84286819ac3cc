// Runs in a worker thread of the bcrypt pool (bcrypt-pool.ts): the synchronous bcryptjs calls
// cost tens of milliseconds of CPU each, which is why they never run on the event loop.
import bcrypt from 'bcryptjs';

export type BcryptTask = { op: 'compare'; password: string; hash: string } | { op: 'hash'; password: string; cost: number };

export default function run(task: BcryptTask): boolean | string {
  if (task.op === 'compare') return bcrypt.compareSync(task.password, task.hash);
  return bcrypt.hashSync(task.password, task.cost);
}
