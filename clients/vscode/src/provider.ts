// The server's /provider side: the catalogue, a course's files, and one file with the license as credential.

/** What the kit uses of a fetch answer (Node 20's fetch; the kit compiles without the DOM library). */
interface FetchAnswer {
  status: number;
  ok: boolean;
  headers: { get(name: string): string | null };
  arrayBuffer(): Promise<ArrayBuffer>;
  json(): Promise<unknown>;
}
type FetchLike = (url: string, init: { method: string; headers: Record<string, string>; signal?: unknown }) => Promise<FetchAnswer>;
interface TimeoutSignal { timeout(ms: number): unknown }

/** undici's codes for a connection that closed under a request (fetch's TypeError carries one as its cause). */
const DROPPED_CONNECTION = new Set(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE']);

function droppedConnection(err: unknown): boolean {
  const cause = err instanceof TypeError ? (err as { cause?: { code?: unknown } }).cause : undefined;
  return typeof cause?.code === 'string' && DROPPED_CONNECTION.has(cause.code);
}

/** One course of the catalogue. */
export interface CatalogCourse {
  id: string;
  title: string;
  price_fen: number;
  plan: 'one_time' | 'subscription';
  period_days: number | null;
}

/** A file or folder of a course, as /provider/courses/{id}/structure lists it. */
export interface CourseEntry {
  name: string;
  path: string;
  type: 'file' | 'folder' | 'exercise';
  free: boolean;
  size?: number;
  folders?: CourseEntry[];
  files?: CourseEntry[];
}

export interface CourseStructure {
  id: string;
  title: string;
  exercises: CourseEntry[];
  files: CourseEntry[];
}

/** Why the provider refused, or why it could not be asked: a stable code (see CONTENT_ERRORS). */
export class ProviderError extends Error {
  constructor(readonly code: string, readonly status: number, detail = '') {
    super(`${status} ${code}${detail ? `: ${detail}` : ''}`);
    this.name = 'ProviderError';
  }
}

/** A file as the server answered it: its bytes and ETag, or "unchanged" (304) for the ETag sent. */
export type FileAnswer = { notModified: true } | { notModified: false; bytes: Uint8Array; etag: string | null };

const DEFAULT_TIMEOUT_MS = 15000;

/** A client for one server's /provider. Every failure is a ProviderError; `offline` when the server cannot be reached. */
export class ProviderClient {
  readonly baseUrl: string;
  private readonly fetch: FetchLike;

  constructor(baseUrl: string, private readonly timeoutMs = DEFAULT_TIMEOUT_MS, fetch?: FetchLike) {
    if (!/^https?:\/\/[^/]/.test(baseUrl)) throw new TypeError('baseUrl must start with https:// (or http:// locally)');
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.fetch = fetch ?? (globalThis as unknown as { fetch: FetchLike }).fetch;
  }

  /**
   * One GET; a connection that dropped before any answer (a keep-alive socket the server closed just as
   * this request went out) is tried once more on a fresh one. A timeout or a second drop is "offline".
   */
  private async get(path: string, headers: Record<string, string>): Promise<FetchAnswer> {
    for (let attempt = 1; ; attempt++) {
      const signal = (globalThis as unknown as { AbortSignal: TimeoutSignal }).AbortSignal.timeout(this.timeoutMs);
      try {
        return await this.fetch(`${this.baseUrl}/provider/${path}`, { method: 'GET', headers, signal });
      } catch (err) {
        if (attempt === 1 && droppedConnection(err)) continue;
        throw new ProviderError('offline', 0, err instanceof Error ? err.message : String(err));
      }
    }
  }

  private static async refusal(answer: FetchAnswer): Promise<ProviderError> {
    let code = answer.status >= 500 ? 'server_error' : 'bad_request';
    let message = '';
    try {
      const body = await answer.json() as { error?: { code?: unknown; message?: unknown } };
      if (body && body.error && typeof body.error.code === 'string') code = body.error.code;
      if (body && body.error && typeof body.error.message === 'string') message = body.error.message;
    } catch {
      // not JSON: a proxy's error page; the status says enough
    }
    return new ProviderError(code, answer.status, message);
  }

  private async json<T>(path: string): Promise<T> {
    const answer = await this.get(path, { Accept: 'application/json' });
    if (!answer.ok) throw await ProviderClient.refusal(answer);
    return await answer.json() as T;
  }

  async catalog(): Promise<CatalogCourse[]> {
    return (await this.json<{ courses: CatalogCourse[] }>('catalog')).courses;
  }

  async structure(courseId: string): Promise<CourseStructure> {
    return this.json<CourseStructure>(`courses/${encodeURIComponent(courseId)}/structure`);
  }

  /** One file; the license (when given) is the bearer credential, `etag` asks for 304 when unchanged. */
  async file(courseId: string, path: string, { license, etag }: { license?: string | null; etag?: string | null } = {}): Promise<FileAnswer> {
    const headers: Record<string, string> = { Accept: '*/*', 'X-Course-Id': courseId };
    if (license) headers.Authorization = `Bearer ${license}`;
    if (etag) headers['If-None-Match'] = etag;
    const encoded = path.split('/').map(encodeURIComponent).join('/');
    const answer = await this.get(`content/${encodeURIComponent(courseId)}/${encoded}`, headers);
    if (answer.status === 304) return { notModified: true };
    if (!answer.ok) throw await ProviderClient.refusal(answer);
    return { notModified: false, bytes: new Uint8Array(await answer.arrayBuffer()), etag: answer.headers.get('ETag') };
  }
}

/** What a learner can do next about a refused file; the kit offers it as a button. */
export type ContentAction = 'buy' | 'enter_key' | 'restore' | 'retry' | 'refresh' | 'contact_support' | 'none';

/** The words for every refusal of /provider (billing/content.py ERRORS) and the kit's own (offline, not configured). */
export const CONTENT_ERRORS: Readonly<Record<string, { zh: string; en: string; action: ContentAction }>> = {
  no_license: { zh: '这是付费内容，需要该课程的许可证。请购买课程；已经买过的，请运行「输入许可证密钥」或在「我的购买」中用邮箱找回。',
    en: 'This is paid content and needs a license for the course. Buy the course; bought it before? Run "Enter license key" or restore it by e-mail in "My purchases".', action: 'buy' },
  invalid_license: { zh: '本机保存的许可证未通过服务器验证。请运行「输入许可证密钥」，粘贴邮件中的密钥。',
    en: 'The license saved here did not verify at the server. Run "Enter license key" and paste the key from your mail.', action: 'enter_key' },
  wrong_course: { zh: '本机保存的许可证属于另一门课程。请输入这门课程的许可证密钥，或购买这门课程。',
    en: 'The license saved here is for another course. Enter the key for this course, or buy it.', action: 'enter_key' },
  license_expired: { zh: '许可证已过期。续费后即可继续打开付费内容。',
    en: 'The license has expired. Renew it to open paid content again.', action: 'buy' },
  license_revoked: { zh: '许可证已被撤销，无法打开付费内容。如有疑问请联系客服并提供订单号。',
    en: 'The license was revoked and no longer opens paid content. Contact support with your order id if this is unexpected.', action: 'contact_support' },
  license_refunded: { zh: '该订单已退款，许可证已失效。如有疑问请联系客服并提供订单号。',
    en: 'This purchase was refunded; its license no longer opens paid content. Contact support with your order id if this is unexpected.', action: 'contact_support' },
  download_limit_reached: { zh: '该许可证的下载次数已用完。已打开过的文件仍可离线阅读；如需更多请联系客服。',
    en: 'This license has used all its downloads. Files opened before still read offline; contact support for more.', action: 'contact_support' },
  license_not_found: { zh: '服务器不认识这个许可证。请运行「输入许可证密钥」，粘贴邮件中的密钥。',
    en: 'The server does not know this license. Run "Enter license key" and paste the key from your mail.', action: 'enter_key' },
  course_not_found: { zh: '该课程不存在或已停止提供。请刷新「我的课程」。',
    en: 'This course does not exist or is no longer offered. Refresh "My courses".', action: 'refresh' },
  not_found: { zh: '课程中没有这个文件（课程可能已更新）。请刷新「我的课程」后重新打开。',
    en: 'The course has no such file (it may have been updated). Refresh "My courses" and open it again.', action: 'refresh' },
  bad_request: { zh: '请求格式不正确。请更新扩展后再试。',
    en: 'The request is malformed. Update the extension and try again.', action: 'none' },
  rate_limited: { zh: '短时间内请求太多，服务器请您稍等。请过一分钟再试。',
    en: 'Too many requests in a short time; the server asks you to wait. Try again in a minute.', action: 'retry' },
  server_error: { zh: '课程服务器暂时出错。请稍后重试。',
    en: 'The course server has a problem right now. Try again in a moment.', action: 'retry' },
  offline: { zh: '无法连接到课程服务器，且这个文件还没有在本机缓存。请联网后重试；打开过一次的文件，离线时也能阅读。',
    en: 'The course server cannot be reached and this file is not cached here yet. Go online and try again; a file opened once reads offline too.', action: 'retry' },
  not_configured: { zh: '此扩展尚未配置课程服务器或许可证公钥，暂时无法购买或打开付费内容。请联系课程作者。',
    en: 'This extension has no course server or license keys configured yet, so paid content cannot be bought or opened. Contact the course author.', action: 'contact_support' },
};

/** The bilingual words for a refusal, e.g. for FileSystemError and notifications. */
export function contentMessage(code: string): { code: string; zh: string; en: string; action: ContentAction; text: string } {
  const words = CONTENT_ERRORS[code] ?? CONTENT_ERRORS.server_error;
  return { code, ...words, text: `${words.zh} · ${words.en}` };
}
