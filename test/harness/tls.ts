// A private CA and server certificates made with openssl for one test, for 127.0.0.1.
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { requireTool } from './tools.js';

const run = promisify(execFile);

export interface CertificateFiles {
  cert: string;
  key: string;
}

export interface PrivateCa extends CertificateFiles {
  /** A server certificate for 127.0.0.1 and localhost, signed by this CA. */
  issue(name: string): Promise<CertificateFiles>;
}

export async function makePrivateCa(dir: string): Promise<PrivateCa> {
  const openssl = requireTool('openssl', 'openssl');
  const ca = { cert: join(dir, 'ca.crt'), key: join(dir, 'ca.key') };
  await run(openssl, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=Longshore test CA', '-keyout', ca.key, '-out', ca.cert]);
  return {
    ...ca,
    issue: async (name) => {
      const files = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
      const csr = join(dir, `${name}.csr`);
      const ext = join(dir, `${name}.ext`);
      await writeFile(ext, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
      await run(openssl, ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${name}`, '-keyout', files.key, '-out', csr]);
      await run(openssl, ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', files.cert]);
      return files;
    },
  };
}
