// "My courses · 我的课程": the courses this extension sells, their files, a lock on what needs a license.
import * as vscode from 'vscode';
import { BUY_COMMAND, TREE_CONTEXT } from './contributes';
import { ContentFileSystem, contentUri } from './contentFs';
import { LicenseStore } from './licenseStore';
import { CatalogCourse, contentMessage, CourseEntry, ProviderClient, ProviderError } from './provider';

/** One row of the tree. */
export type CourseNode =
  | { kind: 'course'; id: string; course: CatalogCourse; licensed: boolean }
  | { kind: 'entry'; id: string; courseId: string; entry: CourseEntry; locked: boolean; parent: CourseNode }
  | { kind: 'message'; id: string; code: string; text: string };

const yuan = (fen: number): string => `¥${(fen / 100).toFixed(2)}`;

export class CoursesTree implements vscode.TreeDataProvider<CourseNode> {
  private readonly changed = new vscode.EventEmitter<CourseNode | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private courses: CourseNode[] = [];

  constructor(
    private readonly provider: ProviderClient | null,
    private readonly content: ContentFileSystem,
    private readonly licenses: LicenseStore,
    /** The courses this extension sells, in the order to show them. */
    private readonly courseIds: readonly string[],
  ) {}

  /** Ask the server again (catalogue and structures) and redraw. */
  refresh(): void {
    this.courses = [];
    this.changed.fire(undefined);
  }

  /** The catalogue entries of this extension's courses (from the server). */
  async catalog(): Promise<CatalogCourse[]> {
    if (!this.provider) throw new ProviderError('not_configured', 0);
    const all = await this.provider.catalog();
    return this.courseIds.map((id) => all.find((c) => c.id === id)).filter((c): c is CatalogCourse => c !== undefined);
  }

  async getChildren(node?: CourseNode): Promise<CourseNode[]> {
    if (!node) {
      try {
        const courses = await this.catalog();
        this.courses = await Promise.all(courses.map(async (course): Promise<CourseNode> =>
          ({ kind: 'course', id: course.id, course, licensed: (await this.licenses.get(course.id)) !== null })));
        return this.courses;
      } catch (err) {
        const code = err instanceof ProviderError ? err.code : 'offline';
        return [{ kind: 'message', id: `message:${code}`, code, text: contentMessage(code).text }];
      }
    }
    if (node.kind === 'message') return [];
    const courseId = node.kind === 'course' ? node.id : node.courseId;
    const licensed = node.kind === 'course' ? node.licensed : !node.locked || (await this.licenses.get(courseId)) !== null;
    let folders: CourseEntry[];
    let files: CourseEntry[];
    if (node.kind === 'course') {
      try {
        const tree = await this.content.structure(courseId, { fresh: true });
        [folders, files] = [tree.exercises, tree.files];
      } catch (err) {
        const code = err instanceof ProviderError ? err.code : 'offline';
        return [{ kind: 'message', id: `message:${courseId}:${code}`, code, text: contentMessage(code).text }];
      }
    } else {
      [folders, files] = [node.entry.folders ?? [], node.entry.files ?? []];
    }
    return [...folders, ...files].map((entry): CourseNode => ({
      kind: 'entry', id: `${courseId}/${entry.path}`, courseId, entry, locked: !entry.free && !licensed, parent: node }));
  }

  getParent(node: CourseNode): CourseNode | undefined {
    return node.kind === 'entry' ? node.parent : undefined;
  }

  getTreeItem(node: CourseNode): vscode.TreeItem {
    if (node.kind === 'message') {
      const item = new vscode.TreeItem(node.text, vscode.TreeItemCollapsibleState.None);
      item.id = node.id;
      item.iconPath = new vscode.ThemeIcon('warning');
      item.tooltip = node.text;
      return item;
    }
    if (node.kind === 'course') {
      const { course, licensed } = node;
      const item = new vscode.TreeItem(course.title, vscode.TreeItemCollapsibleState.Collapsed);
      item.id = course.id;
      item.iconPath = new vscode.ThemeIcon(licensed ? 'book' : 'lock');
      item.contextValue = licensed ? TREE_CONTEXT.course : TREE_CONTEXT.lockedCourse;
      item.description = licensed ? '已解锁 · Unlocked' : `${yuan(course.price_fen)} · 未购买 Not bought`;
      item.tooltip = licensed ? `${course.title}: 已解锁 · unlocked` : `${course.title}: 购买后解锁付费内容 · buy to unlock the paid files`;
      return item;
    }
    const { entry, locked, courseId } = node;
    const folder = entry.type !== 'file';
    const item = new vscode.TreeItem(entry.name, folder ? vscode.TreeItemCollapsibleState.Collapsed : vscode.TreeItemCollapsibleState.None);
    item.id = node.id;
    if (locked) {
      item.iconPath = new vscode.ThemeIcon('lock');
      item.contextValue = TREE_CONTEXT.locked;
      item.description = '需购买 · Locked';
      item.tooltip = `${entry.path}: 购买课程后可打开 · buy the course to open it`;
      if (!folder) item.command = { command: BUY_COMMAND, title: '购买 · Buy', arguments: [courseId] };
      return item;
    }
    const uri = contentUri(courseId, entry.path);
    item.resourceUri = uri;
    item.tooltip = entry.free ? `${entry.path} (免费 · free)` : entry.path;
    item.description = entry.free ? '免费 · Free' : undefined;
    item.contextValue = folder ? TREE_CONTEXT.folder : TREE_CONTEXT.file;
    if (folder) item.iconPath = vscode.ThemeIcon.Folder;
    else item.command = { command: 'vscode.open', title: '打开 · Open', arguments: [uri] };
    return item;
  }

  /** The course's row (after the tree was drawn at least once), for reveal. */
  courseNode(courseId: string): CourseNode | undefined {
    return this.courses.find((c) => c.id === courseId);
  }

  dispose(): void {
    this.changed.dispose();
  }
}
