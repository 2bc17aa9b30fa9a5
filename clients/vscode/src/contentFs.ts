// A read-only file system of course files, `learningbuddy:/<course>/<path>`, served by /provider/content.
//
// Paid files go out with the course's license as the bearer credential. Every file read is kept on disk in
// the extension's global storage with its ETag: the next read asks "unchanged?" (If-None-Match, a 304 costs
// no download) and, when the server cannot be reached, the kept copy is read offline. A refusal of the
// license (revoked, refunded, expired, not ours) forgets the license and the paid copies of that course.
import * as fs from 'fs';
import * as path from 'path';
import * as vscode from 'vscode';
import { CONTENT_SCHEME } from './contributes';
import { LicenseStore } from './licenseStore';
import { contentMessage, CourseEntry, CourseStructure, ProviderClient, ProviderError } from './provider';

/** Refusals that say the stored license no longer opens this course. */
const LICENSE_GONE = new Set(['invalid_license', 'wrong_course', 'license_expired', 'license_revoked', 'license_refunded']);
const FREE = 'free';

/** Where a `learningbuddy:` URI points: the course and the path inside it ('' for the course itself). */
export interface ContentPath {
  courseId: string;
  path: string;
}

/** Split a `learningbuddy:` URI; null for anything that could leave the course (., .., hidden, empty segments). */
export function parseContentUri(uri: vscode.Uri): ContentPath | null {
  const parts = uri.path.split('/').slice(1);
  if (parts.length === 1 && parts[0] === '') return { courseId: '', path: '' };
  if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();  // a trailing slash
  if (parts.some((p) => p === '' || p.startsWith('.') || /[\\\x00-\x1f\x7f]/.test(p))) return null;
  return { courseId: parts[0], path: parts.slice(1).join('/') };
}

/** The URI of a course file (or, without `file`, of the course). */
export function contentUri(courseId: string, file = ''): vscode.Uri {
  return vscode.Uri.from({ scheme: CONTENT_SCHEME, path: `/${courseId}${file ? `/${file}` : ''}` });
}

/** Whether a course path is served to anyone (the course's free/ folder). */
export function isFree(file: string): boolean {
  return file.split('/')[0] === FREE;
}

/** What a read did, for the host's logs and the tests: network (200), revalidated (304) or offline (cache). */
export interface ReadStats {
  downloaded: number;
  revalidated: number;
  offline: number;
}

export class ContentFileSystem implements vscode.FileSystemProvider {
  private readonly changes = new vscode.EventEmitter<vscode.FileChangeEvent[]>();
  readonly onDidChangeFile = this.changes.event;
  readonly stats: ReadStats = { downloaded: 0, revalidated: 0, offline: 0 };
  private readonly structures = new Map<string, CourseStructure>();
  private readonly root: string;

  constructor(
    storageFolder: string,
    private readonly provider: ProviderClient | null,
    private readonly licenses: LicenseStore,
    /** Called with every refusal, to tell the learner and offer the next step. */
    private readonly onRefusal: (code: string, courseId: string) => void = () => undefined,
  ) {
    this.root = path.join(storageFolder, 'lbpay-content');
  }

  // --- the on-disk copies ---------------------------------------------------------------------

  private cacheFile(kind: 'files' | 'etags' | 'structure', courseId: string, file = ''): string {
    return path.join(this.root, kind, courseId, ...file.split('/').filter(Boolean));
  }

  private async readCache(courseId: string, file: string): Promise<{ bytes: Uint8Array; etag: string | null } | null> {
    try {
      const bytes = await fs.promises.readFile(this.cacheFile('files', courseId, file));
      const etag = await fs.promises.readFile(this.cacheFile('etags', courseId, file), 'utf8').catch(() => null);
      return { bytes: new Uint8Array(bytes), etag };
    } catch {
      return null;
    }
  }

  private static async writeWhole(file: string, data: Uint8Array | string): Promise<void> {
    await fs.promises.mkdir(path.dirname(file), { recursive: true });
    const temporary = `${file}.${process.pid}.${Date.now()}.tmp`;
    await fs.promises.writeFile(temporary, data);
    await fs.promises.rename(temporary, file);  // a reader sees the old copy or the new one, never half
  }

  private async writeCache(courseId: string, file: string, bytes: Uint8Array, etag: string | null): Promise<void> {
    await ContentFileSystem.writeWhole(this.cacheFile('files', courseId, file), bytes);
    const tag = this.cacheFile('etags', courseId, file);
    if (etag) await ContentFileSystem.writeWhole(tag, etag); else await fs.promises.rm(tag, { force: true });
  }

  /** Drop the kept copies of a course's paid files (its free/ copies stay). */
  async dropPaidCopies(courseId: string): Promise<void> {
    for (const kind of ['files', 'etags'] as const) {
      const folder = this.cacheFile(kind, courseId);
      const names = await fs.promises.readdir(folder).catch(() => [] as string[]);
      await Promise.all(names.filter((n) => n !== FREE).map((n) => fs.promises.rm(path.join(folder, n), { recursive: true, force: true })));
    }
  }

  // --- the course's tree ----------------------------------------------------------------------

  /** A course's files: from the server (kept on disk), or the kept copy when offline. */
  async structure(courseId: string, { fresh = false }: { fresh?: boolean } = {}): Promise<CourseStructure> {
    const held = this.structures.get(courseId);
    if (held && !fresh) return held;
    const kept = this.cacheFile('structure', courseId, 'structure.json');
    try {
      if (!this.provider) throw new ProviderError('not_configured', 0);
      const tree = await this.provider.structure(courseId);
      this.structures.set(courseId, tree);
      await ContentFileSystem.writeWhole(kept, JSON.stringify(tree));
      return tree;
    } catch (err) {
      if (err instanceof ProviderError && ['offline', 'server_error', 'not_configured'].includes(err.code)) {
        const text = await fs.promises.readFile(kept, 'utf8').catch(() => null);
        if (text) {
          const tree = JSON.parse(text) as CourseStructure;
          this.structures.set(courseId, tree);
          return tree;
        }
      }
      throw err;
    }
  }

  private static find(tree: CourseStructure, file: string): CourseEntry | null {
    let folders: CourseEntry[] = tree.exercises;
    let files: CourseEntry[] = tree.files;
    const parts = file.split('/');
    for (let i = 0; i < parts.length; i += 1) {
      const last = i === parts.length - 1;
      const folder = folders.find((f) => f.name === parts[i]);
      if (last) return files.find((f) => f.name === parts[i]) ?? folder ?? null;
      if (!folder) return null;
      folders = folder.folders ?? [];
      files = folder.files ?? [];
    }
    return null;
  }

  private refuse(code: string, courseId: string): vscode.FileSystemError {
    const words = contentMessage(code);
    this.onRefusal(code, courseId);
    if (code === 'not_found' || code === 'course_not_found') return vscode.FileSystemError.FileNotFound(words.text);
    if (['offline', 'server_error', 'not_configured', 'bad_request'].includes(code)) return vscode.FileSystemError.Unavailable(words.text);
    return vscode.FileSystemError.NoPermissions(words.text);
  }

  private where(uri: vscode.Uri): ContentPath {
    const where = parseContentUri(uri);
    if (!where) throw vscode.FileSystemError.FileNotFound(contentMessage('not_found').text);
    return where;
  }

  // --- vscode.FileSystemProvider --------------------------------------------------------------

  watch(): vscode.Disposable {
    return new vscode.Disposable(() => undefined);
  }

  async stat(uri: vscode.Uri): Promise<vscode.FileStat> {
    const { courseId, path: file } = this.where(uri);
    const folder = { type: vscode.FileType.Directory, ctime: 0, mtime: 0, size: 0, permissions: vscode.FilePermission.Readonly };
    if (!courseId || !file) return folder;
    let tree: CourseStructure;
    try {
      tree = await this.structure(courseId);
    } catch (err) {
      const kept = await this.readCache(courseId, file);
      if (kept) return { ...folder, type: vscode.FileType.File, size: kept.bytes.length };
      throw this.refuse(err instanceof ProviderError ? err.code : 'offline', courseId);
    }
    const entry = ContentFileSystem.find(tree, file);
    if (!entry) throw this.refuse('not_found', courseId);
    return entry.type === 'file' ? { ...folder, type: vscode.FileType.File, size: entry.size ?? 0 } : folder;
  }

  async readDirectory(uri: vscode.Uri): Promise<[string, vscode.FileType][]> {
    const { courseId, path: file } = this.where(uri);
    if (!courseId) return [];
    let tree: CourseStructure;
    try {
      tree = await this.structure(courseId);
    } catch (err) {
      throw this.refuse(err instanceof ProviderError ? err.code : 'offline', courseId);
    }
    const entry = file ? ContentFileSystem.find(tree, file) : { folders: tree.exercises, files: tree.files };
    if (!entry || ('type' in entry && entry.type === 'file')) throw this.refuse('not_found', courseId);
    return [...(entry.folders ?? []).map((f): [string, vscode.FileType] => [f.name, vscode.FileType.Directory]),
      ...(entry.files ?? []).map((f): [string, vscode.FileType] => [f.name, vscode.FileType.File])];
  }

  async readFile(uri: vscode.Uri): Promise<Uint8Array> {
    const { courseId, path: file } = this.where(uri);
    if (!courseId || !file) throw vscode.FileSystemError.FileIsADirectory(uri);
    const free = isFree(file);
    const license = free ? null : await this.licenses.get(courseId);
    const kept = free || license ? await this.readCache(courseId, file) : null;
    if (!this.provider) {
      if (kept) return kept.bytes;
      throw this.refuse('not_configured', courseId);
    }
    let answer;
    try {
      answer = await this.provider.file(courseId, file, { license: license?.key, etag: kept?.etag });
    } catch (err) {
      const code = err instanceof ProviderError ? err.code : 'offline';
      if ((code === 'offline' || code === 'server_error') && kept) {
        this.stats.offline += 1;
        return kept.bytes;
      }
      if (license && LICENSE_GONE.has(code)) {
        await this.licenses.forget(courseId);
        await this.dropPaidCopies(courseId);
      }
      throw this.refuse(code, courseId);
    }
    if (answer.notModified) {
      if (kept) {
        this.stats.revalidated += 1;
        return kept.bytes;
      }
      answer = await this.provider.file(courseId, file, { license: license?.key });
      if (answer.notModified) throw this.refuse('server_error', courseId);
    }
    this.stats.downloaded += 1;
    await this.writeCache(courseId, file, answer.bytes, answer.etag);
    return answer.bytes;
  }

  // Course files are read-only.
  createDirectory(): void {
    throw vscode.FileSystemError.NoPermissions('课程文件只读 · Course files are read-only');
  }

  writeFile(): void {
    throw vscode.FileSystemError.NoPermissions('课程文件只读 · Course files are read-only');
  }

  delete(): void {
    throw vscode.FileSystemError.NoPermissions('课程文件只读 · Course files are read-only');
  }

  rename(): void {
    throw vscode.FileSystemError.NoPermissions('课程文件只读 · Course files are read-only');
  }

  dispose(): void {
    this.changes.dispose();
  }
}
