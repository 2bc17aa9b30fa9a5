// The stand-in's client of a course content provider: the calls and the answer shapes the kit's patch edits.
import * as vscode from 'vscode';
import * as https from 'https';

export class CourseContentProviderClient {
    private providerBaseUrl: string;

    constructor(readonly context: vscode.ExtensionContext) {
        this.providerBaseUrl = 'http://localhost:8000';
    }

    /** Ask the provider about a license: valid with its data, or why not. */
    public async verifyLicense(licenseKey: string, courseId: string = 'cpp-primer-5th'): Promise<any> {
        try {
            const url = `${this.providerBaseUrl}/licenses/${licenseKey}`;
            const response = await this.makeRequest(url, {
                headers: {
                    'X-Course-Id': courseId,
                    'Accept': 'application/json'
                }
            });
            if (response.ok) {
                return { valid: true, data: JSON.parse(response.body) };
            } else if (response.status === 404) {
                return { valid: false, error: 'License not found' };
            } else {
                return { valid: false, error: `Verification failed: ${response.status} ${response.statusText}` };
            }
        } catch (error) {
            return { valid: false, error: `Verification failed: ${error}` };
        }
    }

    private makeRequest(url: string, options: { headers?: Record<string, string> } = {}): Promise<any> {
        return new Promise((resolve, reject) => {
            const urlObj = new URL(url);
            const requestOptions = {
                hostname: urlObj.hostname,
                port: urlObj.port,
                path: urlObj.pathname + urlObj.search,
                method: 'GET',
                headers: options.headers || {},
                timeout: 5000
            };
            const req = https.request(requestOptions, (res) => {
                let body = '';
                res.on('data', (chunk) => { body += chunk; });
                res.on('end', () => resolve({
                    ok: (res.statusCode || 0) >= 200 && (res.statusCode || 0) < 300,
                    status: res.statusCode || 0,
                    statusText: res.statusMessage || '',
                    body
                }));
            });
            req.on('error', reject);
            req.on('timeout', () => { req.destroy(); reject(new Error('Request timeout')); });
            req.end();
        });
    }
}
