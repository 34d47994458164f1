import { existsSync } from 'node:fs';

/**
 * Load `.env.local` (then `.env`) from the working directory when present. Values already in the
 * environment win, so a deployment's real environment is never overridden by a stray file.
 */
export function loadEnvFiles(files: readonly string[] = ['.env.local', '.env']): void {
  for (const file of files) {
    if (existsSync(file)) process.loadEnvFile(file);
  }
}
